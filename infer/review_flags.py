"""Whether a person should check a plan before treating, and why: the plan's `review` section.

Every reason has a stable code, one text, the value measured and the threshold it was held
against. All thresholds are in `Thresholds` (one place); `THRESHOLDS` are the defaults, tuned on
the validation splits of the shared real photo sets (`benchmarks/review_flags.py`).

Reasons that set `needs_review` (the outlines or the colour may be wrong):
  low-confidence      mean model confidence over the treated patches (all patches when none is
                      treated), pixel-weighted, below `min_confidence`. The confidence is the
                      model's top-class probability, calibrated (temperature fitted on the val
                      split at export) when the model's metadata says so
                      (`dermaseg.confidence_calibration`).
  uncertain-pixels    share of uncertain pixels (confidence below `uncertain_confidence`) among
                      the pixels that are a patch or uncertain, above `max_uncertain_share`.
  tta-disagreement    share of pixels whose class changes under test-time augmentation (mirror
                      images), among the pixels that are a patch or disagree, above
                      `max_tta_disagreement` (only for a model that outputs it).
  nothing-found       the model found no patch to treat though it has treatable classes (a
                      plan from the model only): the photo was brought for treatment, so a
                      person should confirm that nothing was missed. Added after the wound test
                      split showed a bad plan no other reason could flag (nothing found at all).
  many-specks         more than `max_specks` components under the minimum patch size.
  many-patches        more than `max_patches` treated patches.
  edge-cut            a treated patch of at least `edge_min_share` of the treated area touches
                      the photo's edge: part of it may be outside the photo.
  not-skin            a treated patch whose surrounding ring is less than `min_ring_skin_share`
                      skin by the photo's skin model (clothes, background, a date stamp). The
                      model is fitted on the skin around the patches (`skin_model`), the
                      patches themselves left out, so a wound bed or a lesion is not "not
                      skin"; strand-finder pixels the model calls skin count as skin
                      (`tone`). A patch on skin at the edge of a limb keeps about half its ring
                      on skin; below 30 % it sits on something else. On the val splits 18 of
                      the 20 patches it named overlapped no hand-drawn truth (false patches).
  pigment-unreliable  no pigment target could be offered, or it is marked unreliable.
  blurry              variance of the Laplacian of the photo (grey, longer side scaled to 512 px)
                      below `min_sharpness`. Set to catch only strong blur: on the real lesion
                      photos (PAD-UFES-20 val) sharpness did not tell bad plans from good ones
                      (soft phone close-ups segment well), so a higher bar only adds false flags.
  exposure            more than `max_clipped_share` of the pixels clipped dark or bright, or mean
                      grey level outside `grey_range` (black or white padding bars at the edges,
                      e.g. a photo zero-padded to a square, are not part of the photo).
  low-resolution      the photo's longer side under `min_long_side_px`.
Notes (listed, but `needs_review` is not set by them alone):
  uncalibrated        no scale: areas are in px; already a plan warning and known before the
                      photo is planned, it says nothing about whether the outlines are right, and
                      counting it would flag every plan of an unmarked photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.infer.schema import Plan, Review, ReviewReason

REASON_CODES = (
    "low-confidence",
    "uncertain-pixels",
    "tta-disagreement",
    "nothing-found",
    "many-specks",
    "many-patches",
    "edge-cut",
    "not-skin",
    "pigment-unreliable",
    "blurry",
    "exposure",
    "low-resolution",
    "uncalibrated",
)
QUALITY_LONG_SIDE = 512  # sharpness is measured with the photo's longer side at this size


@dataclass(frozen=True)
class Thresholds:
    """Every number the review is decided on (see the module notes)."""

    # min_confidence, max_uncertain_share and max_specks: fitted on the val splits of the real
    # lesion (PAD-UFES-20) and wound (FUSeg) sets together, each set held to both goals
    # (benchmarks/review_flags.py --tune); test-split figures in docs/benchmarks.md. Specks did
    # not tell bad plans from good there (the lesion model leaves specks on good plans too), so
    # only a very noisy mask (> 20) is flagged for them.
    min_confidence: float = 0.87
    uncertain_confidence: float = 0.70
    max_uncertain_share: float = 0.275
    max_tta_disagreement: float = 0.15
    max_specks: int = 20
    max_patches: int = 12
    edge_min_share: float = 0.10
    min_ring_skin_share: float = 0.30
    min_sharpness: float = 1.5
    max_clipped_share: float = 0.25
    grey_range: tuple[float, float] = (35.0, 225.0)
    min_long_side_px: int = 256
    # pigment target (skin): withheld below this skin share of the rings or above this spread
    min_target_skin_share: float = 0.35
    max_target_spread_delta_e76: float = 15.0


THRESHOLDS = Thresholds()


@dataclass(frozen=True)
class ImageQuality:
    sharpness: float  # variance of the Laplacian at QUALITY_LONG_SIDE
    clipped_share: float  # share of pixels at grey <= 5 or >= 250
    mean_grey: float
    long_side_px: int


def _without_padding(grey: np.ndarray, level: int = 2) -> np.ndarray:
    """The photo without the black or white bars of padding (a photo zero-padded to a square,
    a letterbox): edge rows and columns that are all at or below `level`, or all at or above
    255 - `level`. What is left is what the camera saw; the whole photo when nothing is left."""

    def content(lines: np.ndarray) -> np.ndarray:
        return ~((lines.max(axis=1) <= level) | (lines.min(axis=1) >= 255 - level))

    rows, cols = np.flatnonzero(content(grey)), np.flatnonzero(content(grey.T))
    if rows.size == 0 or cols.size == 0:
        return grey
    return grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def image_quality(rgb: np.ndarray, long_side_px: int | None = None) -> ImageQuality:
    """Sharpness, clipping and brightness of an RGB uint8 photo, padding bars left out;
    `long_side_px`: the photo's own longer side when `rgb` was decoded smaller."""
    grey = _without_padding(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    height, width = grey.shape
    factor = QUALITY_LONG_SIDE / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    scaled = cv2.resize(
        grey, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    )
    sharpness = float(cv2.Laplacian(scaled, cv2.CV_64F).var())
    clipped = float(np.count_nonzero((scaled <= 5) | (scaled >= 250))) / scaled.size
    return ImageQuality(
        sharpness=round(sharpness, 2),
        clipped_share=round(clipped, 4),
        mean_grey=round(float(scaled.mean()), 2),
        long_side_px=int(long_side_px or max(height, width)),
    )


def _share(part: np.ndarray, pool: np.ndarray) -> float | None:
    total = int(np.count_nonzero(pool))
    return None if total == 0 else round(int(np.count_nonzero(part)) / total, 4)


def _disagreement_share(disagreement: np.ndarray, mask: np.ndarray) -> float | None:
    """Share of the pixels that are a patch or change class under TTA that change class.
    From a per-pixel map exactly; from the exported model's photo-wide share (one number: the
    share of all pixels that change) as changed / (patch + changed), the value the map gives
    when the changed pixels lie outside the patches (a lower bound otherwise)."""
    if disagreement.size != 1:
        changed = disagreement > 0
        return _share(changed, changed | (mask > 0))
    changed_px = float(disagreement.reshape(())) * mask.size
    pool = np.count_nonzero(mask) + changed_px
    return None if pool == 0 else round(changed_px / pool, 4)


def review_plan(
    plan: Plan,
    rgb: np.ndarray,
    mask: np.ndarray,
    confidence: np.ndarray | None,
    disagreement: np.ndarray | None = None,
    thresholds: Thresholds = THRESHOLDS,
) -> Review:
    """The review of a finished plan (procedure included); `rgb`, `mask`, `confidence` (uint8,
    x 255) and `disagreement` (bool or uint8, 1 where TTA changes the class; or the
    model's photo-wide share of such pixels) share the analysed pixels. A plan from a mask
    drawn by a person has no confidence: those reasons are skipped."""
    t = thresholds
    reasons: list[ReviewReason] = []
    measures: dict[str, float | None] = {}

    def add(code: str, text: str, value: float | None, limit: float | None, sets=True) -> None:
        if code not in REASON_CODES:
            raise ValueError(f"review reason {code!r} is not in REASON_CODES")
        reasons.append(
            ReviewReason(code=code, text=text, value=value, threshold=limit, sets_review=sets)
        )

    treated = [p for p in plan.patches if p.treatable]
    scored = treated or plan.patches
    weights = [p.area_px for p in scored if p.mean_confidence is not None]
    if weights:
        mean = sum(p.mean_confidence * p.area_px for p in scored if p.mean_confidence is not None)
        measures["confidence"] = round(mean / sum(weights), 4)
        if measures["confidence"] < t.min_confidence:
            which = "treated patches" if treated else "patches"
            add(
                "low-confidence",
                f"the model is unsure of the {which} (mean confidence "
                f"{measures['confidence']:.2f} < {t.min_confidence:g})",
                measures["confidence"],
                t.min_confidence,
            )
    if confidence is not None:
        uncertain = confidence < round(255 * t.uncertain_confidence)
        share = _share(uncertain, uncertain | (mask > 0))
        measures["uncertain_share"] = share
        if share is not None and share > t.max_uncertain_share:
            add(
                "uncertain-pixels",
                f"{100 * share:.0f} % of the pixels in or near patches are uncertain "
                f"(> {100 * t.max_uncertain_share:g} %)",
                share,
                t.max_uncertain_share,
            )
    if disagreement is not None:
        share = _disagreement_share(np.asarray(disagreement), mask)
        measures["tta_disagreement"] = share
        if share is not None and share > t.max_tta_disagreement:
            add(
                "tta-disagreement",
                f"the outlines change on the mirrored photo ({100 * share:.0f} % of the patch "
                f"pixels, > {100 * t.max_tta_disagreement:g} %)",
                share,
                t.max_tta_disagreement,
            )
    can_treat = any(c.treatable for c in plan.classes if c.class_id != 0)
    if confidence is not None and can_treat and not treated:
        add(
            "nothing-found",
            "the model found no patch to treat: check that it did not miss one",
            None,
            None,
        )
    specks = sum(c.speck_count for c in plan.classes if c.class_id != 0)
    measures["specks"] = specks
    if specks > t.max_specks:
        add(
            "many-specks",
            f"{specks} specks under the minimum patch size (> {t.max_specks}): a noisy mask",
            specks,
            t.max_specks,
        )
    measures["treated_patches"] = len(treated)
    if len(treated) > t.max_patches:
        add(
            "many-patches",
            f"{len(treated)} treated patches (> {t.max_patches}): check they are all real",
            len(treated),
            t.max_patches,
        )
    _edge(plan, treated, t, measures, add)
    _not_skin(treated, t, measures, add)
    _pigment(plan, measures, add)
    _quality(plan, rgb, t, measures, add)
    if plan.calibration.mm_per_pixel is None:
        add("uncalibrated", "not calibrated: areas are in px", None, None, sets=False)
    return Review(
        needs_review=any(r.sets_review for r in reasons), reasons=reasons, measures=measures
    )


def _edge(plan, treated, t: Thresholds, measures, add) -> None:
    width, height = plan.photo.width, plan.photo.height
    total = sum(p.area_px for p in treated)
    cut = [
        p
        for p in treated
        if (p.bbox[0] <= 0 or p.bbox[1] <= 0)
        or p.bbox[0] + p.bbox[2] >= width
        or p.bbox[1] + p.bbox[3] >= height
    ]
    share = 0.0 if total == 0 else sum(p.area_px for p in cut) / total
    measures["edge_cut_share"] = round(share, 4)
    if cut and share >= t.edge_min_share:
        ids = ", ".join(str(p.id) for p in cut)
        add(
            "edge-cut",
            f"patch(es) {ids} touch the edge of the photo ({100 * share:.0f} % of the treated "
            "area): part may lie outside it",
            round(share, 4),
            t.edge_min_share,
        )


def _not_skin(treated, t: Thresholds, measures, add) -> None:
    shares = [
        (p, p.tone.skin_share)
        for p in treated
        if p.tone is not None and p.tone.skin_share is not None
    ]
    measures["min_ring_skin_share"] = min((s for _, s in shares), default=None)
    off = [p for p, s in shares if s < t.min_ring_skin_share]
    if off:
        add(
            "not-skin",
            f"patch(es) {', '.join(str(p.id) for p in off)} are not surrounded by skin (lips, "
            "clothes, hair or background?)",
            measures["min_ring_skin_share"],
            t.min_ring_skin_share,
        )


def _pigment(plan: Plan, measures, add) -> None:
    procedure = plan.procedure
    if procedure is None or not procedure.treated_patch_ids:
        return
    target = procedure.pigment_target
    unreliable = {"few-hair-pixels", "light-hair"} & {w.code for w in procedure.warnings}
    if target.tone is None or target.withheld or unreliable:
        why = target.withheld or ", ".join(sorted(unreliable)) or "not measured"
        add("pigment-unreliable", f"pigment target unreliable: {why}", None, None)


def _quality(plan: Plan, rgb: np.ndarray, t: Thresholds, measures, add) -> None:
    quality = image_quality(rgb, max(plan.photo.width, plan.photo.height))
    measures.update(
        sharpness=quality.sharpness,
        clipped_share=quality.clipped_share,
        mean_grey=quality.mean_grey,
    )
    if quality.sharpness < t.min_sharpness:
        add(
            "blurry",
            f"the photo looks blurred (sharpness {quality.sharpness:.0f} < {t.min_sharpness:g})",
            quality.sharpness,
            t.min_sharpness,
        )
    low, high = t.grey_range
    if quality.clipped_share > t.max_clipped_share or not low <= quality.mean_grey <= high:
        add(
            "exposure",
            f"badly exposed ({100 * quality.clipped_share:.0f} % of pixels clipped, mean grey "
            f"{quality.mean_grey:.0f})",
            quality.clipped_share,
            t.max_clipped_share,
        )
    if quality.long_side_px < t.min_long_side_px:
        add(
            "low-resolution",
            f"too few pixels (longer side {quality.long_side_px} px < {t.min_long_side_px})",
            quality.long_side_px,
            t.min_long_side_px,
        )
