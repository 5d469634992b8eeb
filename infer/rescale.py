"""The one change of pixel frame: a plan made on the photo as analysed (decoded at 1/r of its
size, r = `PhotoInfo.analysis_scale`, a power of two) expressed in the photo's own pixels.

Analysed pixel (row i, column j) covers full-size rows i*r .. i*r+r-1 (likewise columns), so
a coordinate v (pixel centre or pixel edge) maps to (v + 0.5) * r - 0.5, lengths scale by r and
pixel counts by r². Areas in mm² do not change.

`planner.plan_from_mask` applies `to_photo_pixels` once, at its end: every `Plan` outside it is
in the photo's pixels. Writers that draw on or rasterise the analysed pixels apply the scale
themselves, at the edge: `to_photo_mask` (mask PNG, COCO RLE) and `analysed_geometry` (the
overlay, drawn on the photo as analysed). Both directions are exact for a power-of-two r.
"""

from __future__ import annotations

import cv2
import numpy as np

from dermaseg.infer.schema import (
    Calibration,
    Patch,
    PhotoInfo,
    Plan,
    Polygon,
    Tone,
    Treatable,
)


def _point(point: tuple[float, float], s: float) -> tuple[float, float]:
    return ((point[0] + 0.5) * s - 0.5, (point[1] + 0.5) * s - 0.5)


def _count(pixels: int, s: float) -> int:
    """A pixel count in the other frame (exact: counts in photo pixels are multiples of r²)."""
    return round(pixels * s * s)


def _polygon(polygon: Polygon, s: float) -> Polygon:
    return Polygon(
        exterior=[_point(p, s) for p in polygon.exterior],
        holes=[[_point(p, s) for p in hole] for hole in polygon.holes],
    )


def _tone(tone: Tone | None, s: float) -> Tone | None:
    return None if tone is None else tone.model_copy(update={"pixels": _count(tone.pixels, s)})


def _patch(patch: Patch, s: float) -> Patch:
    update: dict = {
        "polygon": _polygon(patch.polygon, s),
        "area_px": _count(patch.area_px, s),
        "perimeter_px": patch.perimeter_px * s,
        "bbox": tuple(round(v * s) for v in patch.bbox),
        "centroid": _point(patch.centroid, s),
    }
    if patch.tone is not None:
        update["tone"] = patch.tone.model_copy(
            update={
                "patch": _tone(patch.tone.patch, s),
                "surround": _tone(patch.tone.surround, s),
                "ring_px": (patch.tone.ring_px[0] * s, patch.tone.ring_px[1] * s),
            }
        )
    return patch.model_copy(update=update)


def _calibration(calibration: Calibration, s: float) -> Calibration:
    update: dict = {}
    if calibration.mm_per_pixel is not None:
        update["mm_per_pixel"] = calibration.mm_per_pixel / s
    if calibration.marker is not None:
        marker = calibration.marker
        update["marker"] = marker.model_copy(
            update={
                "corners_px": [_point(c, s) for c in marker.corners_px],
                "side_lengths_px": [side * s for side in marker.side_lengths_px],
            }
        )
    return calibration.model_copy(update=update)


def _treatable(treatable: Treatable, s: float) -> Treatable:
    return treatable.model_copy(
        update={
            "min_patch_area_px": _count(treatable.min_patch_area_px, s),
            "margin_px": treatable.margin_px * s,
            "patch_area_px": _count(treatable.patch_area_px, s),
            "area_px": _count(treatable.area_px, s),
            "outline": [_polygon(p, s) for p in treatable.outline],
        }
    )


def analysed_calibration(calibration: Calibration, photo: PhotoInfo) -> Calibration:
    """A plan's calibration (photo pixels) in the pixels of the photo as analysed."""
    r = photo.analysis_scale
    return calibration if r == 1 else _calibration(calibration, 1 / r)


def analysed_photo(photo: PhotoInfo) -> PhotoInfo:
    """The record of the photo as analysed: its decoded size, analysis scale 1."""
    r = photo.analysis_scale
    return photo.model_copy(
        update={"width": photo.width // r, "height": photo.height // r, "analysis_scale": 1}
    )


def to_photo_mask(mask: np.ndarray, r: int) -> np.ndarray:
    """A class mask (uint8) or a bool [H, W] mask of the photo as analysed, at the photo's own
    size: each pixel repeated r x r times (nearest-neighbour upscaling by an integer factor)."""
    if r == 1:
        return mask
    height, width = mask.shape
    pixels = mask.view(np.uint8) if mask.dtype == bool else mask
    full = cv2.resize(pixels, (width * r, height * r), interpolation=cv2.INTER_NEAREST_EXACT)
    return full.view(bool) if mask.dtype == bool else full


def _rescaled(plan: Plan, photo: PhotoInfo, s: float) -> Plan:
    return plan.model_copy(
        update={
            "photo": photo,
            "calibration": _calibration(plan.calibration, s),
            "classes": [
                c.model_copy(
                    update={
                        "area_px": _count(c.area_px, s),
                        "speck_area_px": _count(c.speck_area_px, s),
                    }
                )
                for c in plan.classes
            ],
            "decisions": [
                d.model_copy(update={"area_px": _count(d.area_px, s)}) for d in plan.decisions
            ],
            "patches": [_patch(p, s) for p in plan.patches],
            "treatable": _treatable(plan.treatable, s),
            "skin_tone": _tone(plan.skin_tone, s),
        }
    )


def to_photo_pixels(plan: Plan, photo: PhotoInfo) -> Plan:
    """A plan made in the pixels of the photo as analysed (`plan.photo` is `analysed_photo`) with
    every px quantity in the full-size `photo`'s pixels (unchanged for scale 1). Called once, by
    `planner.plan_from_mask`; the procedure and review sections are added after it."""
    r = photo.analysis_scale
    return plan if r == 1 else _rescaled(plan, photo, r)


def analysed_geometry(plan: Plan) -> Plan:
    """The exact inverse of `to_photo_pixels`, for drawing a plan on the photo as analysed (the
    overlay): photo, calibration, totals, patches and treatable area in the analysed pixels.
    Its procedure and review sections are left as they are; write only the original plan."""
    r = plan.photo.analysis_scale
    return plan if r == 1 else _rescaled(plan, analysed_photo(plan.photo), 1 / r)
