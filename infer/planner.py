"""Photo + class mask -> Plan: patches, totals, treatable area, calibration and tones.

`plan_from_mask` works in the pixels of the photo as analysed (decoded at 1/r of its size, see
`rescale`) and returns the plan in the photo's own pixels, with the regions it found (still in
the analysed pixels) for the writers that need a patch's exact pixels.
"""

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
from dermaseg.infer import warning_codes as codes
from dermaseg.infer.calibration import marker_polygon_mask
from dermaseg.infer.rescale import analysed_photo, to_photo_pixels
from dermaseg.infer.schema import (
    Calibration,
    ClassDecision,
    ClassTotal,
    Patch,
    PatchTone,
    PhotoInfo,
    Plan,
    PlanWarning,
    SourceInfo,
    Tone,
    Treatable,
)
from dermaseg.infer.skin_model import SkinModel, fit_skin_model

SKIN_TONE_PIXELS = 1_000_000  # the overall skin tone is measured on about this many pixels
# The minimum patch size without calibration: the larger of this many pixels as the model sees
# the photo (at its working size; 5 x 5) and this share of the photo. Smaller components are
# specks: counted, never outlined, toned or treated.
SPECK_WORKING_PX = 25
SPECK_PHOTO_SHARE = 2e-4


@dataclass(frozen=True)
class PlanSettings:
    """How patches become a plan (the numbers a clinic may tune)."""

    min_patch_area_mm2: float = 0.0
    min_patch_area_px: int = 0
    margin_mm: float = 0.0
    simplify_px: float = 1.0
    tone: bool = True
    extra_warnings: list[PlanWarning] = field(default_factory=list)
    treat_classes: tuple[str, ...] | None = None  # None: the taxonomy's treatable classes
    # (class name, procedure) for classes another procedure would treat
    other_procedures: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class MinPatch:
    """The smallest component that is a patch (in px of the mask) and how it was set."""

    px: int
    rule: str


def min_patch(
    settings: PlanSettings,
    mm_per_pixel: float | None,
    shape: tuple[int, ...],
    working_size: int | None,
) -> MinPatch:
    """The minimum patch size, which always applies: the mm² minimum when calibrated, else a
    default relative to the photo and to the model's working size (`SPECK_*`); never below
    `settings.min_patch_area_px`."""
    given = settings.min_patch_area_px
    if mm_per_pixel is not None:
        px = math.ceil(settings.min_patch_area_mm2 / mm_per_pixel**2 - 1e-9)
        rule = f"{settings.min_patch_area_mm2:g} mm²"
    else:
        share = math.ceil(SPECK_PHOTO_SHARE * shape[0] * shape[1])
        px = share
        rule = f"not calibrated: {100 * SPECK_PHOTO_SHARE:g} % of the photo"
        if working_size:
            per_working_px = (max(shape[0], shape[1]) / working_size) ** 2
            px = max(px, math.ceil(SPECK_WORKING_PX * per_working_px))
            rule += (
                f" or {SPECK_WORKING_PX} pixels at the model's working size ({working_size} px),"
                " whichever is larger"
            )
    if given > px:
        return MinPatch(given, f"{rule}; raised by the minimum in px given")
    return MinPatch(max(px, 1), rule)


def _mm2(area_px: float, mm_per_pixel: float | None) -> float | None:
    return None if mm_per_pixel is None else float(area_px) * mm_per_pixel**2


def _margin_px(settings: PlanSettings, mm_per_pixel: float | None) -> float:
    if settings.margin_mm <= 0 or mm_per_pixel is None:
        return 0.0
    return settings.margin_mm / mm_per_pixel


@dataclass(frozen=True)
class MaskPlan:
    """A plan and the regions its patches were made from.

    `plan` is in the full-size photo's pixels (as written); `regions` are in the pixels of the
    photo as analysed (`plan.photo.analysis_scale` smaller): patch `i` is `regions[i - 1]`."""

    plan: Plan
    regions: tuple[geometry.Region, ...]


def plan_from_mask(
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
) -> MaskPlan:
    """Turn a photo's class mask (and the model's confidence, if any) into a plan; `lap` is
    called with "geometry" and then "tone" as each part is done (for timing).

    `rgb`, `mask`, `confidence` and `calibration` are in the pixels of the photo as analysed:
    `photo` (the full-size photo's record) decoded at 1/`photo.analysis_scale`. Everything is
    measured there; the plan changes frame once, at the end (`rescale.to_photo_pixels`).

    Components under the minimum patch size (`min_patch`) are specks: counted per class, never
    outlined, toned or treated."""
    analysed_size = (photo.height // photo.analysis_scale, photo.width // photo.analysis_scale)
    if mask.shape != analysed_size:
        raise ValueError(
            f"mask is {mask.shape[1]}x{mask.shape[0]}, the photo as analysed is "
            f"{analysed_size[1]}x{analysed_size[0]}"
        )
    scale = calibration.mm_per_pixel
    warnings = [*settings.extra_warnings, *calibration.warnings]
    class_ids = range(1, taxonomy.num_classes)
    minimum = min_patch(settings, scale, mask.shape, source.working_size)
    areas = geometry.component_areas(mask, class_ids)
    regions = geometry.find_regions(
        mask, class_ids, confidence, settings.simplify_px, min_area_px=minimum.px
    )
    margin = _margin_px(settings, scale)
    if settings.margin_mm > 0 and scale is None:
        warnings.append(codes.warning("margin-ignored", margin_mm=settings.margin_mm))
    treatable_ids = _treatable_ids(taxonomy, settings)
    treated = [r.class_id in treatable_ids for r in regions]
    kept = np.zeros(mask.shape, bool)
    for region in itertools.compress(regions, treated):
        x, y, w, h = region.bbox
        kept[y : y + h, x : x + w] |= region.pixels
    treatable = _treatable(kept, regions, treated, minimum, margin, settings, scale)
    classes = _class_totals(mask, areas, minimum.px, taxonomy, scale, treatable_ids)
    decisions = _decisions(classes, treatable_ids, dict(settings.other_procedures), taxonomy)
    others = [d for d in decisions if d.decision == "other procedure"]
    if others:
        what = ", ".join(f"{d.class_name} ({d.patches} patch(es))" for d in others)
        procedures = ", ".join(sorted({d.other_procedure or "" for d in others}))
        warnings.append(codes.warning("other-procedure", what=what, procedures=procedures))
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
    analysed = Plan(
        dermaseg_version=__version__,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        photo=analysed_photo(photo),
        source=source,
        calibration=calibration,
        classes=classes,
        patches=patches,
        treatable=treatable,
        skin_tone=skin_tone,
        decisions=decisions,
        warnings=codes.unique(warnings),
    )
    return MaskPlan(to_photo_pixels(analysed, photo), tuple(regions))


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
        rgb,
        inputs.lesion,
        inputs.excluded,
        _skin_stride(mask.shape),
        hair=inputs.hair,
        skin=inputs.skin,
    )
    return patch_tones, skin


@dataclass(frozen=True)
class _ToneInputs:
    lesion: np.ndarray  # not normal skin: every patch pixel
    excluded: np.ndarray  # never skin: hair strands, the marker
    hair: tone.Hair
    ring: tuple[float, float]
    skin: SkinModel | None  # the photo's skin colour; None when too little skin to fit it


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
    skin = fit_skin_model(rgb, not_skin=(lesion & ~scalp) | excluded, near=lesion)
    return _ToneInputs(lesion, excluded, hair, tone.ring_px(mask.shape), skin)


def _patch_tone(rgb: np.ndarray, region: geometry.Region, tones: _ToneInputs):
    return tone.patch_tone(
        rgb,
        region.pixels,
        region.bbox,
        tones.lesion,
        tones.excluded,
        tones.ring,
        hair=tones.hair,
        skin=tones.skin,
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
    areas: dict[int, np.ndarray],
    min_px: int,
    taxonomy: Taxonomy,
    scale: float | None,
    treatable_ids: set[int],
) -> list[ClassTotal]:
    counts = np.bincount(mask.ravel(), minlength=taxonomy.num_classes)
    totals = []
    for c in taxonomy.classes:
        area_mm2 = _mm2(int(counts[c.id]), scale)
        sizes = areas.get(c.id, np.zeros(0, np.int64))
        specks = sizes[sizes < min_px]
        totals.append(
            ClassTotal(
                class_id=c.id,
                name=c.name,
                treatable=c.id in treatable_ids,
                area_px=int(counts[c.id]),
                area_mm2=area_mm2,
                area_cm2=None if area_mm2 is None else area_mm2 / 100.0,
                patch_count=int(len(sizes) - len(specks)),
                speck_count=len(specks),
                speck_area_px=int(specks.sum()),
            )
        )
    return totals


def _decisions(
    classes: list[ClassTotal],
    treatable_ids: set[int],
    other_procedures: dict[str, str],
    taxonomy: Taxonomy,
) -> list[ClassDecision]:
    """For each class found: treated, left to another procedure, below the minimum or not
    treatable, with one sentence saying so."""
    decisions = []
    for total in classes:
        if total.class_id == 0 or total.area_px == 0:
            continue
        specks = ""
        if total.speck_count:
            specks = f"; {total.speck_count} speck(s) under the minimum left out"
        other = None
        if total.patch_count == 0:
            decision = "below minimum"
            text = f"only specks under the minimum patch size ({total.speck_count})"
        elif total.class_id in treatable_ids:
            decision, text = "treated", f"{total.patch_count} patch(es) treated{specks}"
        elif total.name in other_procedures:
            decision, other = "other procedure", other_procedures[total.name]
            text = f"{total.patch_count} patch(es) left to {other}{specks}"
        elif taxonomy.classes[total.class_id].treatable:
            decision = "not treatable"
            text = f"{total.patch_count} patch(es); not treated by this procedure{specks}"
        else:
            decision = "not treatable"
            text = f"{total.patch_count} patch(es); not a treatable class{specks}"
        patch_px = total.area_px - total.speck_area_px
        decisions.append(
            ClassDecision(
                class_name=total.name,
                decision=decision,
                area_px=patch_px,
                area_mm2=None
                if total.area_mm2 is None
                else total.area_mm2 * patch_px / max(total.area_px, 1),
                patches=total.patch_count,
                specks=total.speck_count,
                other_procedure=other,
                text=f"{total.name}: {text}",
            )
        )
    return decisions


def _treatable(
    kept: np.ndarray,
    regions: list[geometry.Region],
    treated: list[bool],
    minimum: MinPatch,
    margin: float,
    settings: PlanSettings,
    scale: float | None,
) -> Treatable:
    grown = geometry.grow(kept, margin) if margin > 0 else kept
    area_px = int(np.count_nonzero(grown))
    area_mm2 = _mm2(area_px, scale)
    patch_area = sum(r.area_px for r in itertools.compress(regions, treated))
    return Treatable(
        min_patch_area_px=minimum.px,
        min_patch_area_mm2=_mm2(minimum.px, scale),
        min_patch_rule=minimum.rule,
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
