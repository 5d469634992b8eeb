"""Express a plan made on a photo decoded at 1/r of its size in the photo's own pixels.

Analysed pixel (row i, column j) covers full-size rows i*r .. i*r+r-1 (likewise columns), so
a coordinate v (pixel centre or pixel edge) maps to (v + 0.5) * r - 0.5, lengths scale by r and
pixel counts by r². Areas in mm² do not change.
"""

from __future__ import annotations

from dermaseg.infer.schema import (
    Calibration,
    Patch,
    PhotoInfo,
    Plan,
    Polygon,
    Tone,
    Treatable,
)


def _point(point: tuple[float, float], r: float) -> tuple[float, float]:
    return ((point[0] + 0.5) * r - 0.5, (point[1] + 0.5) * r - 0.5)


def _polygon(polygon: Polygon, r: int) -> Polygon:
    return Polygon(
        exterior=[_point(p, r) for p in polygon.exterior],
        holes=[[_point(p, r) for p in hole] for hole in polygon.holes],
    )


def _tone(tone: Tone | None, r: int) -> Tone | None:
    return None if tone is None else tone.model_copy(update={"pixels": tone.pixels * r * r})


def _patch(patch: Patch, r: int) -> Patch:
    x, y, w, h = patch.bbox
    update: dict = {
        "polygon": _polygon(patch.polygon, r),
        "area_px": patch.area_px * r * r,
        "perimeter_px": patch.perimeter_px * r,
        "bbox": (x * r, y * r, w * r, h * r),
        "centroid": _point(patch.centroid, r),
    }
    if patch.tone is not None:
        update["tone"] = patch.tone.model_copy(
            update={
                "patch": _tone(patch.tone.patch, r),
                "surround": _tone(patch.tone.surround, r),
                "ring_px": (patch.tone.ring_px[0] * r, patch.tone.ring_px[1] * r),
            }
        )
    return patch.model_copy(update=update)


def _calibration(calibration: Calibration, r: float) -> Calibration:
    update: dict = {}
    if calibration.mm_per_pixel is not None:
        update["mm_per_pixel"] = calibration.mm_per_pixel / r
    if calibration.marker is not None:
        marker = calibration.marker
        update["marker"] = marker.model_copy(
            update={
                "corners_px": [_point(c, r) for c in marker.corners_px],
                "side_lengths_px": [side * r for side in marker.side_lengths_px],
            }
        )
    return calibration.model_copy(update=update)


def _treatable(treatable: Treatable, r: int) -> Treatable:
    return treatable.model_copy(
        update={
            "min_patch_area_px": treatable.min_patch_area_px * r * r,
            "margin_px": treatable.margin_px * r,
            "patch_area_px": treatable.patch_area_px * r * r,
            "area_px": treatable.area_px * r * r,
            "outline": [_polygon(p, r) for p in treatable.outline],
        }
    )


def analysed_calibration(calibration: Calibration, photo: PhotoInfo) -> Calibration:
    """A plan's calibration (photo pixels) in the pixels of the photo as analysed."""
    r = photo.analysis_scale
    return calibration if r == 1 else _calibration(calibration, 1 / r)


def analysed_photo(photo: PhotoInfo, width: int, height: int) -> PhotoInfo:
    """The photo as analysed: its decoded size, analysis scale 1."""
    return photo.model_copy(update={"width": width, "height": height, "analysis_scale": 1})


def to_photo_pixels(plan: Plan, photo: PhotoInfo) -> Plan:
    """The plan of the photo analysed at 1/photo.analysis_scale, every px quantity in full-size
    photo pixels (unchanged for scale 1)."""
    r = photo.analysis_scale
    if r == 1:
        return plan
    return plan.model_copy(
        update={
            "photo": photo,
            "calibration": _calibration(plan.calibration, r),
            "classes": [
                c.model_copy(
                    update={"area_px": c.area_px * r * r, "speck_area_px": c.speck_area_px * r * r}
                )
                for c in plan.classes
            ],
            "decisions": [
                d.model_copy(update={"area_px": d.area_px * r * r}) for d in plan.decisions
            ],
            "patches": [_patch(p, r) for p in plan.patches],
            "treatable": _treatable(plan.treatable, r),
            "skin_tone": _tone(plan.skin_tone, r),
        }
    )
