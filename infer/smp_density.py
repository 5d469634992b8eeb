"""Scalp micropigmentation dot density and size from the patient's own hair.

SMP replicates follicles, so the target is the density of the patient's strands and their width,
measured in the healthy scalp around the treated region: a ring from `RING_GAP_MM` to
`RING_GAP_MM + RING_REACH_MM` outside it (lesions and the marker left out).

Method:

1. Strands: `tone.find_hair` (the photo's hair finder; darker or lighter than the scalp,
   whichever departs further from the local median: `strands_are_dark`), kept where a pixel
   also differs from the local scalp (21 x 21 median) by at least `CORE_SHARE` of the strand
   cores' (95th percentile over hair pixels): pores and skin lines, a few L* deep, drop out.
   Cores less than `MIN_CORE_CONTRAST` L* from the scalp are skin texture: no strands.
2. Strand pieces are 8-connected components; only elongated ones (long side of the minimum-area
   rectangle >= `MIN_LENGTH_PX` and >= `ELONGATION` x the mean width) count. A piece counts as
   round(area / single-strand area) strands (crossing strands merge), the single-strand area
   being the median piece area; a piece belongs to the ring when its centroid does.
3. Density = strands / ring area (cm² from the calibration). Uncertainty (1 sigma):
   sqrt(N + ((N - K) / 2)²) / area, N strands, K pieces: counting (Poisson) noise plus half the
   strands added by splitting merged pieces.
4. Width: per single-strand piece (area 0.6-1.5 x the single area) the darkness summed over the
   piece (grown by one pixel, so the blur's tails count) divided by the strand's full darkness
   and its length. The full darkness is the larger of the piece's 90th percentile and the
   darkest 1 % of strand pixels in the ring (a strand under 2 px wide never reaches the hair's
   darkness after the camera's blur). The median over pieces; uncertainty the half
   inter-quartile range.

On 12 synthetic close-ups of dark stubble (0.05 mm/px, 50-130 strands/cm², strands 0.06-0.10 mm
wide, JPEG q90) the density is within 6 % of the generator's count in all (median 2 %), the width
within 22 % (tests/test_smp_density.py).
Limits: long hair lying over the scalp cannot be counted (strands cover more than
`MAX_HAIR_SHARE` of the ring, or more than `MAX_MERGED_SHARE` of the strands come from splitting
merged pieces): a warning says so and nothing is reported. Photos analysed at a fraction of
their size (large JPEGs with a model) may lose thin strands: plan SMP close-ups with
`--full-resolution`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer import tone
from dermaseg.infer.analysis import MadePlan, treated_pixels
from dermaseg.infer.calibration import marker_polygon_mask
from dermaseg.infer.schema import Number, SmpDensity

RING_GAP_MM = 2.0
RING_REACH_MM = 15.0
RING_PX_UNCALIBRATED = (5.0, 200.0)  # gap and reach without a scale
BACKGROUND_PX = 21
CORE_PERCENTILE = 95.0
CORE_SHARE = 0.35
MIN_CORE_CONTRAST = 8.0  # L*: strand cores at least this far from the scalp (skin texture: <6)
ELONGATION = 3.0
MIN_LENGTH_PX = 4.0
MIN_STRANDS = 20
MAX_HAIR_SHARE = 0.35
MAX_MERGED_SHARE = 0.4  # strands from split pieces above this share: uncountable (close-ups: <0.25)
MEASURED = "measured"
METHOD = (
    "strands (tone.find_hair, and darker than the local scalp by 35 % of the strand cores) in "
    "the healthy scalp {ring}; elongated pieces counted, merged pieces split by area (single "
    "strand = median piece area); density = strands / ring area, ± sqrt(N + ((N - pieces) / "
    "2)²) / area; width = summed darkness / core darkness / length of single-strand pieces "
    "(median, ± half IQR). SMP target: one dot per strand at the strands' density, dots as "
    "wide as the strands"
)


@dataclass(frozen=True)
class StrandCount:
    strands: float  # N, merged pieces split by area
    pieces: int  # K, elongated components in the ring
    single_area_px: float
    width_px: float | None
    width_spread_px: float | None  # half inter-quartile range
    ring_px: int
    hair_share: float  # share of the ring's pixels that are strand


def ring_around(
    treated: np.ndarray, excluded: np.ndarray, gap_px: float, reach_px: float
) -> np.ndarray:
    """Bool [H, W]: pixels `gap_px`..`gap_px + reach_px` from the treated region, not excluded
    (all of the photo outside `excluded` when nothing is treated)."""
    treated = np.asarray(treated, bool)
    if not treated.any():
        return ~np.asarray(excluded, bool)
    distance = cv2.distanceTransform((~treated).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return (distance > gap_px) & (distance <= gap_px + reach_px) & ~np.asarray(excluded, bool)


def strand_mask(rgb: np.ndarray, dark: bool, ignore: np.ndarray | None, where: np.ndarray):
    """Bool strand pixels and the uint8 darkness (scalp minus pixel) image."""
    hair = tone.find_hair(rgb, dark, ignore=ignore).mask
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    background = cv2.medianBlur(gray, BACKGROUND_PX)
    darkness = cv2.subtract(background, gray) if dark else cv2.subtract(gray, background)
    counted = hair & where
    if np.count_nonzero(counted) == 0:
        return counted, darkness
    core = float(np.percentile(darkness[counted], CORE_PERCENTILE))
    if core < MIN_CORE_CONTRAST * 2.55:  # grey levels per L* unit
        return np.zeros_like(counted), darkness  # skin texture only: pores, lines
    return hair & (darkness >= CORE_SHARE * core), darkness


def strands_are_dark(rgb: np.ndarray, where: np.ndarray) -> bool:
    """Whether strands are darker than the scalp in `where`: the scalp is the local median
    (strands cover a minority of short-haired scalp), and the strands are the side that departs
    further from it (99th percentile)."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    background = cv2.medianBlur(gray, BACKGROUND_PX)
    where = np.asarray(where, bool)
    if not where.any():
        return True
    darker = np.percentile(cv2.subtract(background, gray)[where], 99)
    lighter = np.percentile(cv2.subtract(gray, background)[where], 99)
    return bool(darker >= lighter)


def count_strands(
    rgb: np.ndarray, ring: np.ndarray, dark: bool, ignore: np.ndarray | None = None
) -> StrandCount:
    """Strands in `ring` (bool [H, W]) of an RGB photo (see the module docstring)."""
    strands, darkness = strand_mask(rgb, dark, ignore, ring)
    ring_px = int(np.count_nonzero(ring))
    share = float(np.count_nonzero(strands & ring)) / max(ring_px, 1)
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(strands.view(np.uint8), 8)
    pieces = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        cx, cy = centroids[label]
        if not ring[min(round(cy), ring.shape[0] - 1), min(round(cx), ring.shape[1] - 1)]:
            continue
        points = np.column_stack(np.nonzero(labels[y : y + h, x : x + w] == label)[::-1])
        (_, _), (side_a, side_b), _ = cv2.minAreaRect(points.astype(np.float32))
        length = max(side_a, side_b) + 1.0
        if length >= MIN_LENGTH_PX and length >= ELONGATION * area / length:
            pieces.append((label, area, length, (x, y, w, h)))
    if not pieces:
        return StrandCount(0.0, 0, 0.0, None, None, ring_px, share)
    areas = np.array([p[1] for p in pieces], np.float64)
    single = float(np.median(areas))
    total = float(np.maximum(1.0, np.round(areas / single)).sum())
    widths = []
    full = float(np.percentile(darkness[strands & ring], 99))  # the darkest cores: whole strands
    for label, area, length, (x, y, w, h) in pieces:
        if not 0.6 * single <= area <= 1.5 * single:
            continue
        rows = slice(max(0, y - 1), y + h + 1)
        cols = slice(max(0, x - 1), x + w + 1)
        piece = (labels[rows, cols] == label).view(np.uint8)
        grown = cv2.dilate(piece, np.ones((3, 3), np.uint8)) > 0
        values = darkness[rows, cols].astype(np.float64)
        core = max(float(np.percentile(values[piece > 0], 90)), full)
        if core > 0:
            widths.append(values[grown].sum() / core / length)
    width = spread = None
    if widths:
        q1, median, q3 = np.percentile(widths, [25, 50, 75])
        width, spread = float(median), float((q3 - q1) / 2)
    return StrandCount(total, len(pieces), single, width, spread, ring_px, share)


def measure_density(
    rgb: np.ndarray,
    treated: np.ndarray,
    excluded: np.ndarray,
    mm_per_pixel: float | None,
    dark: bool | None = None,
) -> SmpDensity:
    """Hair density and strand width around `treated` (bool [H, W]), as the SMP dot target.
    `dark`: strands darker than the scalp; None decides it (`strands_are_dark`)."""
    warnings: list[str] = []
    if mm_per_pixel is not None:
        gap, reach = RING_GAP_MM / mm_per_pixel, RING_REACH_MM / mm_per_pixel
        ring_text = f"{RING_GAP_MM:g}-{RING_GAP_MM + RING_REACH_MM:g} mm around the treated area"
    else:
        gap, reach = RING_PX_UNCALIBRATED
        ring_text = f"{gap:g}-{gap + reach:g} px around the treated area"
        warnings.append("the photo is not calibrated: hair density per 10,000 px, width in px")
    if not np.asarray(treated, bool).any():
        ring_text = "of the whole photo (nothing is treated)"
    ring = ring_around(treated, excluded, gap, reach)
    if dark is None:
        dark = strands_are_dark(rgb, ring)
    count = count_strands(rgb, ring, dark, ignore=excluded)
    if not dark:
        warnings.append("hair lighter than the scalp (grey or blond): strands are hard to count")
    area_unit = 1.0 if mm_per_pixel is None else mm_per_pixel**2 / 100.0  # px -> cm²
    area = count.ring_px * area_unit
    unit = "strands/10k px" if mm_per_pixel is None else "strands/cm2"
    per = 1e4 if mm_per_pixel is None else 1.0
    region = Number(
        value=round(area * (1e-4 if mm_per_pixel is None else 1.0), 4),
        unit="10k px" if mm_per_pixel is None else "cm2",
        source=MEASURED,
    )
    uncountable = None
    if count.ring_px == 0:
        uncountable = "no healthy scalp around the treated area is in the photo"
    elif count.hair_share > MAX_HAIR_SHARE:
        uncountable = (
            f"strands cover {100 * count.hair_share:.0f} % of the scalp around the treated area "
            "(long hair lying over it): they cannot be told apart"
        )
    elif count.strands - count.pieces > MAX_MERGED_SHARE * count.strands:
        uncountable = (
            f"{count.strands:.0f} strands come from only {count.pieces} pieces: they cross too "
            "much to be told apart (long hair)"
        )
    elif count.strands < MIN_STRANDS:
        uncountable = f"only {count.strands:.0f} strands found around the treated area"
    if uncountable is not None:
        warnings.append(
            f"hair density not measured: {uncountable}; count strands on a trichoscope close-up "
            "of shaved or short hair"
        )
        return SmpDensity(
            dot_density=None,
            dot_density_uncertainty=None,
            dot_size=None,
            dot_size_uncertainty=None,
            strands_counted=count.strands,
            pieces=count.pieces,
            region_area=region,
            method=METHOD.format(ring=ring_text),
            warnings=warnings,
        )
    density = count.strands / area * per
    sigma = np.sqrt(count.strands + ((count.strands - count.pieces) / 2.0) ** 2) / area * per
    length_unit, length_scale = ("px", 1.0) if mm_per_pixel is None else ("mm", mm_per_pixel)
    width = None if count.width_px is None else count.width_px * length_scale
    spread = None if count.width_spread_px is None else count.width_spread_px * length_scale
    if width is None:
        warnings.append("strand width not measured: no single strand was found")
    return SmpDensity(
        dot_density=Number(value=round(density, 2), unit=unit, source=MEASURED),
        dot_density_uncertainty=round(float(sigma), 2),
        dot_size=None
        if width is None
        else Number(value=round(width, 4), unit=length_unit, source=MEASURED),
        dot_size_uncertainty=None if spread is None else round(spread, 4),
        strands_counted=count.strands,
        pieces=count.pieces,
        region_area=region,
        method=METHOD.format(ring=ring_text),
        warnings=warnings,
    )


def treated_region(made: MadePlan, taxonomy: Taxonomy, classes) -> tuple[np.ndarray, np.ndarray]:
    """Bool [H, W] masks in the analysed pixels: the plan's treated patches of `classes` (their
    regions' exact pixels), and what is neither scalp nor hair (other classes' patches, the
    marker)."""
    mask = made.analysis.mask
    ids = [c.id for c in taxonomy.classes if c.name in classes and c.id > 0]
    treated = treated_pixels(made.plan, made.regions, mask.shape, ids)
    others = (mask > 0) & ~np.isin(mask, ids)
    marker = marker_polygon_mask(made.analysis.calibration, mask.shape)
    return treated, others if marker is None else others | marker


def for_plan(made: MadePlan, taxonomy: Taxonomy, classes) -> SmpDensity:
    """The SMP target of a plan: around its treated patches of `classes`; other lesions,
    untreated patches of `classes` (not healthy) and the marker left out."""
    treated, others = treated_region(made, taxonomy, classes)
    analysis = made.analysis
    untreated = (analysis.mask > 0) & ~treated
    return measure_density(
        analysis.rgb, treated, others | untreated, analysis.calibration.mm_per_pixel
    )
