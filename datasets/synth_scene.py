"""What a synthetic photo shows, decided before any pixel is coloured: the scene.

The region mask is drawn here, first and exactly; rendering later colours pixels from it, so the
mask is the ground truth by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.synth_shapes import (
    MARKER_CELLS,
    QUIET_CELLS,
    MarkerPlacement,
    fill_polygon,
    polar_blob,
    tapered_stroke,
)
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY

VITILIGO = DEFAULT_TAXONOMY.class_id("vitiligo")
SCAR = DEFAULT_TAXONOMY.class_id("scar")
THINNING = DEFAULT_TAXONOMY.class_id("thinning")

MARKER_SIDE_MM = 20.0
MIN_SIZE = 96  # smallest photo side that still fits a detectable marker
MARKER_EDGE_CLEARANCE_PX = 8.0  # sticker to photo edge; cv2.aruco ignores outlines near the edge
SHAPE_TRIES = 8  # attempts to place a lesion clear of the marker before giving it up

# Hair colour families in CIELAB: (L*, a*, b*) lower and upper bounds, and how often each occurs.
HAIR_COLOURS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float], float]] = {
    "black": ((8, 0, 0), (18, 3, 6), 0.30),
    "dark_brown": ((18, 3, 8), (30, 8, 16), 0.20),
    "brown": ((30, 6, 14), (45, 12, 24), 0.20),
    "blond": ((55, 3, 20), (72, 8, 32), 0.12),
    "red": ((35, 18, 25), (50, 28, 35), 0.05),
    "grey": ((58, -1, 0), (82, 1, 6), 0.13),
}


@dataclass(frozen=True)
class VitiligoStyle:
    lab: np.ndarray  # [3] the fully depigmented colour
    depigmentation: float  # 0..1, how far patches move from skin towards `lab`
    edge_px: float  # width of the soft inner edge
    rim_dl: float  # L* darkening of a hyperpigmented rim outside the patch (0 = none)
    rim_px: float  # decay length of that rim
    trichrome_px: float  # width of a partly depigmented zone inside the border (0 = none)


@dataclass(frozen=True)
class ScarStyle:
    delta_lab: np.ndarray  # [3] colour offset from the skin (pink, white or dark scars)
    edge_px: float
    relief: float  # L* amplitude of the raised-look shading (0 = flat)


@dataclass(frozen=True)
class HairStyle:
    group_lab: np.ndarray  # [G, 3] paint colour of each strand group (equal strand counts)
    coverage: float  # strand length drawn per scalp pixel, in pixel widths (~ covered fraction)
    length_px: float
    thinning_density: float  # strand density inside thinning regions, relative to outside
    angle: float  # main combing direction, radians
    waviness: float  # radians of slow direction change across the scalp

    @property
    def lab(self) -> np.ndarray:
        """Mean paint colour over all strands."""
        return self.group_lab.mean(axis=0)


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    kind: str  # "skin" or "scalp"
    mm_per_pixel: float  # the scene's scale (recorded only when a marker shows it)
    marker: MarkerPlacement | None
    mask: np.ndarray  # uint8 [H, W] class ids
    skin_lab: np.ndarray  # [3] base skin colour
    vitiligo: VitiligoStyle
    scar: ScarStyle
    hair: HairStyle | None
    jpeg_quality: int


def sample_scene(
    rng: np.random.Generator, width: int, height: int, kind: str, with_marker: bool
) -> Scene:
    """Draw a complete scene: scale, marker, lesion regions and every colour."""
    short = min(width, height)
    side_px = _marker_side_px(rng, short)
    marker = _place_marker(rng, width, height, side_px) if with_marker else None
    mask = np.zeros((height, width), np.uint8)
    reserved = _reserved(mask.shape, marker)
    if kind == "skin":
        if rng.random() < 0.75:
            add_vitiligo(rng, mask, reserved)
        if rng.random() < 0.55:
            add_scars(rng, mask, reserved)
    elif rng.random() < 0.85:
        _add_thinning(rng, mask, reserved)
    return Scene(
        width=width,
        height=height,
        kind=kind,
        mm_per_pixel=MARKER_SIDE_MM / side_px,
        marker=marker,
        mask=mask,
        skin_lab=_skin_lab(rng),
        vitiligo=vitiligo_style(rng, short),
        scar=scar_style(rng),
        hair=_hair_style(rng, short) if kind == "scalp" else None,
        jpeg_quality=int(rng.integers(80, 96)),
    )


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _marker_side_px(rng: np.random.Generator, short: int) -> float:
    """Black-square side in pixels: 10-20 % of the short side, never under 24 px (4 px a cell)."""
    low = max(24.0, 0.10 * short)
    return _log_uniform(rng, low, max(low, 0.20 * short))


def _place_marker(
    rng: np.random.Generator, width: int, height: int, side_px: float
) -> MarkerPlacement:
    """Put the sticker inside the photo, clear of its edges, upright or turned up to 20 degrees."""
    angle = 0.0 if rng.random() < 0.3 else rng.uniform(-0.35, 0.35)
    sticker = side_px * (MARKER_CELLS + 2 * QUIET_CELLS) / MARKER_CELLS
    half = 0.5 * sticker * (abs(np.cos(angle)) + abs(np.sin(angle))) + MARKER_EDGE_CLEARANCE_PX
    x = rng.uniform(half, width - 1 - half)
    y = rng.uniform(half, height - 1 - half)
    return MarkerPlacement(center=(float(x), float(y)), side_px=side_px, angle=float(angle))


def _reserved(shape: tuple[int, int], marker: MarkerPlacement | None) -> np.ndarray:
    """Pixels lesions must keep clear of: the sticker plus one cell of skin around it."""
    if marker is None:
        return np.zeros(shape, np.uint8)
    return fill_polygon(shape, marker.square(MARKER_CELLS + 2 * QUIET_CELLS + 2))


def _random_point(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    height, width = mask.shape
    return rng.uniform((0.0, 0.0), (width - 1.0, height - 1.0))


def _place(
    rng: np.random.Generator,
    mask: np.ndarray,
    reserved: np.ndarray,
    class_id: int,
    draw: Callable[[np.random.Generator], np.ndarray],
) -> None:
    """Paint the first region `draw(rng)` makes that stays clear of `reserved`."""
    for _ in range(SHAPE_TRIES):
        region = draw(rng)
        if region.any() and not (region & reserved).any():
            mask[region > 0] = class_id
            return


def add_vitiligo(rng: np.random.Generator, mask: np.ndarray, reserved: np.ndarray) -> None:
    """Draw vitiligo patches into `mask`, away from the `reserved` pixels."""
    short = min(mask.shape)

    def draw(rng: np.random.Generator) -> np.ndarray:
        radius = short * _log_uniform(rng, 0.03, 0.16)
        outline = polar_blob(
            rng, _random_point(rng, mask), radius, rng.uniform(0.15, 0.45), rng.uniform(0.6, 1.6)
        )
        region = fill_polygon(mask.shape, outline)
        if rng.random() < 0.35:
            _punch_islands(rng, region, outline, radius)
        return region

    for _ in range(int(rng.integers(1, 6))):
        _place(rng, mask, reserved, VITILIGO, draw)


def _punch_islands(
    rng: np.random.Generator, region: np.ndarray, outline: np.ndarray, radius: float
) -> None:
    """Remove small discs inside a patch: islands of repigmented (normal) skin."""
    low, high = outline.min(axis=0), outline.max(axis=0)
    height, width = region.shape
    for x, y in rng.uniform(low, high, (int(rng.integers(2, 9)), 2)):
        col, row = int(np.clip(x, 0, width - 1)), int(np.clip(y, 0, height - 1))
        if region[row, col]:
            disc = max(2, round(radius * rng.uniform(0.05, 0.14)))
            cv2.circle(region, (col, row), disc, 0, -1, cv2.LINE_8)


def add_scars(rng: np.random.Generator, mask: np.ndarray, reserved: np.ndarray) -> None:
    """Draw scar streaks into `mask`, away from the `reserved` pixels."""
    short = min(mask.shape)

    def draw(rng: np.random.Generator) -> np.ndarray:
        center, angle = _random_point(rng, mask), rng.uniform(0.0, np.pi)
        if rng.random() < 0.7:
            length = short * rng.uniform(0.15, 0.6)
            half = 0.5 * length * np.array([np.cos(angle), np.sin(angle)])
            width = max(3.0, short * rng.uniform(0.012, 0.05))
            bend = length * rng.uniform(-0.25, 0.25)
            outline = tapered_stroke(center - half, center + half, bend, width)
        else:
            across = max(2.0, short * rng.uniform(0.01, 0.04))
            outline = polar_blob(rng, center, across, 0.08, rng.uniform(3.0, 8.0))
        return fill_polygon(mask.shape, outline)

    for _ in range(int(rng.integers(1, 4))):
        _place(rng, mask, reserved, SCAR, draw)


def _add_thinning(rng: np.random.Generator, mask: np.ndarray, reserved: np.ndarray) -> None:
    short = min(mask.shape)

    def draw(rng: np.random.Generator) -> np.ndarray:
        radius = short * rng.uniform(0.12, 0.3)
        outline = polar_blob(
            rng, _random_point(rng, mask), radius, rng.uniform(0.1, 0.3), rng.uniform(0.7, 1.5)
        )
        return fill_polygon(mask.shape, outline)

    for _ in range(1 if rng.random() < 0.8 else 2):
        _place(rng, mask, reserved, THINNING, draw)


def _skin_lab(rng: np.random.Generator) -> np.ndarray:
    """A base skin colour; the ITA angle is uniform from very light (62 deg) to dark (-48 deg).

    b* peaks (yellowest) at intermediate and tanned tones; a* rises slightly as skin darkens.
    """
    ita = rng.uniform(-48.0, 62.0)
    b = rng.uniform(12.0, 18.0) + 5.0 * np.exp(-(((ita - 20.0) / 30.0) ** 2))
    lightness = float(np.clip(50.0 + b * np.tan(np.radians(ita)), 28.0, 82.0))
    a = rng.uniform(6.0, 14.0) + float(np.clip((55.0 - lightness) * 0.08, 0.0, 3.0))
    return np.array([lightness, a, b])


def vitiligo_style(rng: np.random.Generator, short: int) -> VitiligoStyle:
    """A random look for the vitiligo patches of one photo (`short`: its shorter side, px)."""
    hyperpigmented_rim = rng.random() < 0.35
    return VitiligoStyle(
        lab=np.array([rng.uniform(84.0, 94.0), rng.uniform(2.0, 7.0), rng.uniform(4.0, 10.0)]),
        depigmentation=rng.uniform(0.75, 1.0),
        edge_px=rng.uniform(1.0, 1.0 + 0.012 * short),
        rim_dl=rng.uniform(4.0, 10.0) if hyperpigmented_rim else 0.0,
        rim_px=rng.uniform(2.0, 2.0 + 0.02 * short),
        trichrome_px=rng.uniform(2.0, 2.0 + 0.03 * short) if rng.random() < 0.4 else 0.0,
    )


def scar_style(rng: np.random.Generator) -> ScarStyle:
    """Pink (fresh), white (mature, hypopigmented) or dark (hyperpigmented) scar tissue."""
    variant = rng.choice(3, p=(0.45, 0.4, 0.15))
    low, high = [
        ((2, 6, -6), (8, 14, -1)),
        ((6, -7, -9), (16, -3, -4)),
        ((-15, 0, 0), (-6, 4, 5)),
    ][variant]
    return ScarStyle(
        delta_lab=rng.uniform(low, high),
        edge_px=rng.uniform(0.8, 2.5),
        relief=0.0 if rng.random() < 0.4 else rng.uniform(2.0, 6.0),
    )


def _hair_style(rng: np.random.Generator, short: int) -> HairStyle:
    names = list(HAIR_COLOURS)
    weights = np.array([HAIR_COLOURS[n][2] for n in names])
    low, high, _ = HAIR_COLOURS[names[rng.choice(len(names), p=weights / weights.sum())]]
    base = rng.uniform(low, high)
    groups = base + rng.normal(0.0, (2.5, 1.2, 1.2), (4, 3))
    groups[:, 0] = np.clip(groups[:, 0], 3.0, 95.0)
    return HairStyle(
        group_lab=groups,
        coverage=rng.uniform(0.6, 1.3),
        length_px=short * rng.uniform(0.08, 0.18),
        thinning_density=rng.uniform(0.08, 0.25),
        angle=rng.uniform(0.0, 2.0 * np.pi),
        waviness=rng.uniform(0.0, 0.5),
    )
