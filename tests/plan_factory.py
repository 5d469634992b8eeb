"""Plans built by hand from a class-id mask, for tests of the formats derived from a plan."""

from __future__ import annotations

import cv2
import numpy as np

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.infer.schema import (
    Calibration,
    ClassTotal,
    Patch,
    PatchTone,
    PhotoInfo,
    Plan,
    PlanWarning,
    Polygon,
    SourceInfo,
    Tone,
    Treatable,
)
from dermaseg.infer.warning_codes import warning

MIN_PATCH_PX = 20
MARGIN_MM = 2.0


def synthetic_mask(height: int = 120, width: int = 160) -> np.ndarray:
    """Vitiligo with a hole, a tiny vitiligo speck, two scars and a thinning triangle; the
    bottom-left corner is left bare (where the scale bar goes)."""
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (45, 45), (30, 20), 15, 0, 360, 1, cv2.FILLED)
    cv2.circle(mask, (45, 45), 6, 0, cv2.FILLED)
    mask[8:10, 110:112] = 1
    mask[20:46, 100:131] = 2
    mask[95:100, 140:146] = 2
    triangle = np.array([[60, 112], [100, 112], [80, 78]], np.int32)
    cv2.fillPoly(mask, [triangle], 3)
    return mask


def synthetic_photo(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    """Skin-coloured gradient with a little noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 30, width)[None, :, None]
    base = np.array([205.0, 160.0, 135.0])[None, None, :] - ramp
    noise = rng.normal(0, 3, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def tone(lab: tuple[float, float, float], hex_colour: str, ita: float) -> Tone:
    return Tone(lab=lab, hex=hex_colour, ita_deg=ita, ita_category="intermediate", pixels=100)


def polygons(binary: np.ndarray) -> list[Polygon]:
    """Outlines (exterior plus holes) of a binary mask through its boundary pixels' centres (a
    plainer outline than the planner's, which runs along pixel edges)."""
    contours, hierarchy = cv2.findContours(
        binary.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    if hierarchy is None:
        return []
    result = []
    for i, contour in enumerate(contours):
        if hierarchy[0, i, 3] != -1:
            continue
        holes = [contours[j] for j in range(len(contours)) if hierarchy[0, j, 3] == i]
        result.append(
            Polygon(
                exterior=[(x, y) for x, y in contour[:, 0].tolist()],
                holes=[[(x, y) for x, y in h[:, 0].tolist()] for h in holes],
            )
        )
    return result


def scaled(value: float, factor: float | None, power: int = 1) -> float | None:
    return None if factor is None else value * factor**power


def make_patches(
    mask: np.ndarray, taxonomy: Taxonomy, mm_per_pixel: float | None, confidence: float | None
) -> list[tuple[Patch, np.ndarray]]:
    """Each 8-connected region of each class as a Patch, with its binary mask."""
    patches: list[tuple[Patch, np.ndarray]] = []
    for c in taxonomy.classes[1:]:
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(
            (mask == c.id).astype(np.uint8), connectivity=8
        )
        for label in range(1, count):
            binary = labels == label
            x, y, w, h, area = (int(v) for v in stats[label])
            outline = polygons(binary)[0]
            perimeter = float(cv2.arcLength(np.asarray(outline.exterior, np.float32), True))
            patch = Patch(
                id=len(patches) + 1,
                class_id=c.id,
                class_name=c.name,
                treatable=c.treatable and area >= MIN_PATCH_PX,
                polygon=outline,
                area_px=area,
                area_mm2=scaled(area, mm_per_pixel, 2),
                perimeter_px=perimeter,
                perimeter_mm=scaled(perimeter, mm_per_pixel),
                bbox=(x, y, w, h),
                centroid=(float(centroids[label][0]), float(centroids[label][1])),
                mean_confidence=confidence,
                tone=PatchTone(
                    patch=tone((82.0, 3.5, 9.0), "#e6cbbd", 74.3),
                    surround=tone((64.0, 12.0, 18.0), "#c09079", 37.9),
                    delta_e76=21.0,
                    ring_px=(3.0, 12.0),
                ),
            )
            patches.append((patch, binary))
    return patches


def make_treatable(
    patches: list[tuple[Patch, np.ndarray]], mm_per_pixel: float | None
) -> Treatable:
    """Treatable patches grown by the margin (a disc of the margin's radius)."""
    kept = [p for p, _ in patches if p.treatable]
    margin_px = MARGIN_MM / mm_per_pixel if mm_per_pixel else 0.0
    keep = np.zeros(patches[0][1].shape, np.uint8)
    for patch, binary in patches:
        keep[binary] = patch.treatable
    radius = round(margin_px)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(keep, kernel)
    area = int(grown.sum())
    patch_area = sum(p.area_px for p in kept)
    return Treatable(
        min_patch_area_px=MIN_PATCH_PX,
        min_patch_area_mm2=scaled(MIN_PATCH_PX, mm_per_pixel, 2),
        margin_mm=MARGIN_MM,
        margin_px=margin_px,
        patch_count=len(kept),
        patch_area_px=patch_area,
        patch_area_mm2=scaled(patch_area, mm_per_pixel, 2),
        area_px=area,
        area_mm2=scaled(area, mm_per_pixel, 2),
        area_cm2=scaled(area / 100, mm_per_pixel, 2),
        outline=polygons(grown),
    )


def make_plan(
    mask: np.ndarray,
    taxonomy: Taxonomy = DEFAULT_TAXONOMY,
    *,
    name: str = "photo.jpg",
    mm_per_pixel: float | None = 0.2,
    confidence: float | None = 0.9,
) -> Plan:
    """A plan of `mask` as `dermaseg plan` would describe it (manual calibration when given)."""
    height, width = mask.shape
    patches = make_patches(mask, taxonomy, mm_per_pixel, confidence)
    classes = []
    for c in taxonomy.classes:
        area = int((mask == c.id).sum())
        classes.append(
            ClassTotal(
                class_id=c.id,
                name=c.name,
                treatable=c.treatable,
                area_px=area,
                area_mm2=scaled(area, mm_per_pixel, 2),
                area_cm2=scaled(area / 100, mm_per_pixel, 2),
                patch_count=sum(p.class_id == c.id for p, _ in patches),
            )
        )
    calibrated = mm_per_pixel is not None
    return Plan(
        dermaseg_version="0.1.0",
        photo=PhotoInfo(name=name, sha256="0" * 64, width=width, height=height, exif_orientation=1),
        source=SourceInfo(
            kind="model",
            name="synthetic.onnx",
            sha256="1" * 64,
            contract_version="1",
            precision="fp32",
            working_size=512,
        ),
        calibration=Calibration(
            method="manual" if calibrated else "none",
            mm_per_pixel=mm_per_pixel,
            warnings=[] if calibrated else [warning("uncalibrated")],
        ),
        classes=classes,
        patches=[p for p, _ in patches],
        treatable=make_treatable(patches, mm_per_pixel),
        skin_tone=tone((64.0, 12.0, 18.0), "#c09079", 37.9),
        warnings=[PlanWarning(code="test", text="synthetic <b>test</b> plan")],
    )
