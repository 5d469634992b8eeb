"""Photo + class mask -> Plan: patches, totals, treatable area, calibration and tones."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from dermaseg import __version__
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer import geometry, tone
from dermaseg.infer.calibration import marker_polygon_mask
from dermaseg.infer.schema import (
    Calibration,
    ClassTotal,
    Patch,
    PatchTone,
    PhotoInfo,
    Plan,
    SourceInfo,
    Tone,
    Treatable,
)

SKIN_TONE_PIXELS = 1_000_000  # the overall skin tone is measured on about this many pixels


@dataclass(frozen=True)
class PlanSettings:
    """How patches become a plan (the numbers a clinic may tune)."""

    min_patch_area_mm2: float = 0.0
    min_patch_area_px: int = 0
    margin_mm: float = 0.0
    simplify_px: float = 1.0
    tone: bool = True
    extra_warnings: list[str] = field(default_factory=list)
    treat_classes: tuple[str, ...] | None = None  # None: the taxonomy's treatable classes


def _mm2(area_px: float, mm_per_pixel: float | None) -> float | None:
    return None if mm_per_pixel is None else float(area_px) * mm_per_pixel**2


def _min_area_px(settings: PlanSettings, mm_per_pixel: float | None) -> int:
    """The larger of the px minimum and the mm² minimum converted to px (when calibrated)."""
    from_mm = (
        0 if mm_per_pixel is None else math.ceil(settings.min_patch_area_mm2 / mm_per_pixel**2)
    )
    return max(settings.min_patch_area_px, from_mm)


def _margin_px(settings: PlanSettings, mm_per_pixel: float | None) -> float:
    if settings.margin_mm <= 0 or mm_per_pixel is None:
        return 0.0
    return settings.margin_mm / mm_per_pixel


def build_plan(
    rgb: np.ndarray,
    mask: np.ndarray,
    confidence: np.ndarray | None,
    *,
    photo: PhotoInfo,
    source: SourceInfo,
    calibration: Calibration,
    taxonomy: Taxonomy,
    settings: PlanSettings,
    lap: Callable[[str], None] = lambda stage: None,
) -> Plan:
    """Turn a photo's class mask (and the model's confidence, if any) into a plan; `lap` is
    called with "geometry" and then "tone" as each part is done (for timing)."""
    scale = calibration.mm_per_pixel
    warnings = [*settings.extra_warnings, *calibration.warnings]
    regions = geometry.find_regions(
        mask, range(1, taxonomy.num_classes), confidence, settings.simplify_px
    )
    min_area = _min_area_px(settings, scale)
    margin = _margin_px(settings, scale)
    if settings.margin_mm > 0 and scale is None:
        warnings.append("blending margin ignored: the photo is not calibrated (no mm per pixel)")
    treatable_ids = _treatable_ids(taxonomy, settings)
    treated = [r.class_id in treatable_ids and r.area_px >= min_area for r in regions]
    kept = np.zeros(mask.shape, bool)
    for region in itertools.compress(regions, treated):
        x, y, w, h = region.bbox
        kept[y : y + h, x : x + w] |= region.pixels
    treatable = _treatable(kept, regions, treated, min_area, margin, settings, scale)
    classes = _class_totals(mask, regions, taxonomy, scale, treatable_ids)
    lap("geometry")
    patch_tones, skin_tone = (
        _tones(rgb, mask, regions, calibration, taxonomy) if settings.tone else (None, None)
    )
    lap("tone")
    patches = [
        Patch(
            id=number,
            class_id=region.class_id,
            class_name=taxonomy.classes[region.class_id].name,
            treatable=treat,
            polygon=region.polygon,
            area_px=region.area_px,
            area_mm2=_mm2(region.area_px, scale),
            perimeter_px=region.perimeter_px,
            perimeter_mm=None if scale is None else region.perimeter_px * scale,
            bbox=region.bbox,
            centroid=region.centroid,
            mean_confidence=region.mean_confidence,
            tone=patch_tone,
        )
        for number, (region, treat, patch_tone) in enumerate(
            zip(regions, treated, patch_tones or [None] * len(regions), strict=True), start=1
        )
    ]
    return Plan(
        dermaseg_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        photo=photo,
        source=source,
        calibration=calibration,
        classes=classes,
        patches=patches,
        treatable=treatable,
        skin_tone=skin_tone,
        warnings=warnings,
    )


def _tones(
    rgb: np.ndarray,
    mask: np.ndarray,
    regions: list[geometry.Region],
    calibration: Calibration,
    taxonomy: Taxonomy,
) -> tuple[list[PatchTone], Tone | None]:
    """Each region's tone (patch and surrounding skin) and the photo's overall skin tone."""
    inputs = _tone_inputs(rgb, mask, calibration, taxonomy)
    patch_tones = [_patch_tone(rgb, region, inputs) for region in regions]
    skin = tone.skin_tone(
        rgb, inputs.lesion, inputs.excluded, _skin_stride(mask.shape), hair=inputs.hair
    )
    return patch_tones, skin


@dataclass(frozen=True)
class _ToneInputs:
    lesion: np.ndarray  # not normal skin: every patch pixel
    excluded: np.ndarray  # never skin: hair strands, the marker
    hair: tone.Hair
    ring: tuple[float, float]


def _tone_inputs(
    rgb: np.ndarray, mask: np.ndarray, calibration: Calibration, taxonomy: Taxonomy
) -> _ToneInputs:
    """Hair strands (their lightness decided from thinning regions when there are some), the
    marker, and the ring distances; thinning regions are scalp skin and set the hair levels."""
    thinning = [c.id for c in taxonomy.classes if c.name == "thinning"]
    scalp = np.isin(mask, thinning) if thinning else np.zeros(mask.shape, bool)
    lesion = mask > 0
    marker = marker_polygon_mask(calibration, mask.shape)
    not_skin = lesion & ~scalp if marker is None else (lesion & ~scalp) | marker
    dark = tone.hair_is_dark(rgb, bare_hint=scalp if scalp.any() else None)
    hair = tone.find_hair(rgb, dark, ignore=not_skin)
    excluded = hair.mask if marker is None else hair.mask | marker
    return _ToneInputs(lesion, excluded, hair, tone.ring_px(mask.shape))


def _patch_tone(rgb: np.ndarray, region: geometry.Region, tones: _ToneInputs):
    return tone.patch_tone(
        rgb, region.pixels, region.bbox, tones.lesion, tones.excluded, tones.ring, hair=tones.hair
    )


def _skin_stride(shape: tuple[int, ...]) -> int:
    """Sample every n-th row and column of big photos for the overall skin tone."""
    return max(1, int(math.sqrt(shape[0] * shape[1] / SKIN_TONE_PIXELS)))


def _treatable_ids(taxonomy: Taxonomy, settings: PlanSettings) -> set[int]:
    if settings.treat_classes is None:
        return {c.id for c in taxonomy.classes if c.treatable}
    return {c.id for c in taxonomy.classes if c.name in settings.treat_classes and c.id > 0}


def _class_totals(
    mask: np.ndarray,
    regions: list[geometry.Region],
    taxonomy: Taxonomy,
    scale: float | None,
    treatable_ids: set[int],
) -> list[ClassTotal]:
    counts = np.bincount(mask.ravel(), minlength=taxonomy.num_classes)
    patch_counts = np.bincount(
        [r.class_id for r in regions], minlength=taxonomy.num_classes
    ).tolist()
    totals = []
    for c in taxonomy.classes:
        area_mm2 = _mm2(int(counts[c.id]), scale)
        totals.append(
            ClassTotal(
                class_id=c.id,
                name=c.name,
                treatable=c.id in treatable_ids,
                area_px=int(counts[c.id]),
                area_mm2=area_mm2,
                area_cm2=None if area_mm2 is None else area_mm2 / 100.0,
                patch_count=0 if c.id == 0 else patch_counts[c.id],
            )
        )
    return totals


def _treatable(
    kept: np.ndarray,
    regions: list[geometry.Region],
    treated: list[bool],
    min_area: int,
    margin: float,
    settings: PlanSettings,
    scale: float | None,
) -> Treatable:
    grown = geometry.grow(kept, margin) if margin > 0 else kept
    area_px = int(np.count_nonzero(grown))
    area_mm2 = _mm2(area_px, scale)
    patch_area = sum(r.area_px for r in itertools.compress(regions, treated))
    return Treatable(
        min_patch_area_px=min_area,
        min_patch_area_mm2=_mm2(min_area, scale),
        margin_mm=settings.margin_mm if margin > 0 else 0.0,
        margin_px=margin,
        patch_count=sum(treated),
        patch_area_px=patch_area,
        patch_area_mm2=_mm2(patch_area, scale),
        area_px=area_px,
        area_mm2=area_mm2,
        area_cm2=None if area_mm2 is None else area_mm2 / 100.0,
        outline=geometry.outline(grown, settings.simplify_px),
    )
