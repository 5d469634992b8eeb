"""Synthetic scalps with exact hair truth: close-ups of short hair with known strand counts (for
the SMP dot density) and four-view scalp sets with a known hair-loss fraction (for SALT).

Close-up (`smp_scalp`): a buzz-cut scalp as SMP clients wear it, photographed at a known scale.
Strands are straight stubble of a known width and length, rooted on a jittered grid (follicles
are evenly spaced) at a known density per cm²; inside a thinning patch in the middle only a
share of the follicles still holds a strand. Roots are placed beyond the photo's edges too, so
strand bodies are as dense at the edges as in the middle. Strands are drawn at 4x and averaged
down (their width is exact), over skin rendered by `synth_render`.

Four views (`salt_views`): top, back, left and right photos of one scalp, each with a thinning
region covering a chosen share of the photo (the whole photo is scalp), rendered with the
generator's usual hair. Truth: the share of each view's pixels in the thinning mask, and SALT.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.synth_render import lab_to_rgb, render, smooth_noise
from dermaseg.datasets.synth_scene import THINNING, sample_scene
from dermaseg.datasets.synth_shapes import fill_polygon, polar_blob

SUPERSAMPLE = 4
SALT_WEIGHTS = {"top": 0.40, "back": 0.24, "left": 0.18, "right": 0.18}
DARK_HAIR = ((8.0, 0.0, 0.0), (28.0, 6.0, 12.0))  # CIELAB bounds of dark hair


@dataclass(frozen=True)
class ScalpCloseUp:
    rgb: np.ndarray  # uint8 [H, W, 3], before JPEG
    mask: np.ndarray  # uint8 [H, W]: THINNING in the thinning patch, else 0
    truth: dict  # mm_per_pixel, density_per_cm2, strand_width_mm, strand_length_mm, roots, ...


def smp_scalp(
    seed: int,
    size: tuple[int, int] = (384, 320),
    mm_per_pixel: float = 0.05,
    density_per_cm2: float = 80.0,
    strand_width_mm: float = 0.08,
    strand_length_mm: float = 0.8,
    thinning_share: float = 0.15,
) -> ScalpCloseUp:
    """A close-up of a shaved scalp with dark hair; `truth["density_per_cm2"]` is the number of
    strands rooted in the healthy scalp of the photo per cm² of it (the follicle grid's
    density, realised)."""
    width, height = size
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, width, height, "scalp", False)
    short = min(width, height)
    blob = polar_blob(
        rng,
        np.array([width / 2, height / 2]) + rng.uniform(-0.05, 0.05, 2) * short,
        short * rng.uniform(0.18, 0.24),
        0.2,
        rng.uniform(0.8, 1.25),
    )
    thinning = fill_polygon((height, width), blob).astype(bool)
    mask = np.where(thinning, THINNING, 0).astype(np.uint8)
    scene = dataclasses.replace(
        scene, mask=np.zeros_like(mask), hair=None, mm_per_pixel=mm_per_pixel
    )
    rgb = render(rng, scene).rgb.astype(np.float32) / 255.0
    spacing = 10.0 / np.sqrt(density_per_cm2) / mm_per_pixel  # px between follicles
    length = strand_length_mm / mm_per_pixel
    reach = length + 2.0
    xs = np.arange(-reach, width + reach, spacing)
    ys = np.arange(-reach, height + reach, spacing)
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    roots = grid + rng.uniform(-0.45, 0.45, grid.shape) * spacing
    cols = np.clip(np.round(roots[:, 0]).astype(int), 0, width - 1)
    rows = np.clip(np.round(roots[:, 1]).astype(int), 0, height - 1)
    inside_photo = (
        (roots[:, 0] >= -0.5)
        & (roots[:, 0] < width - 0.5)
        & (roots[:, 1] >= -0.5)
        & (roots[:, 1] < height - 0.5)
    )
    in_thinning = thinning[rows, cols] & inside_photo
    keep = np.where(in_thinning, rng.random(len(roots)) < thinning_share, True)
    roots, in_thinning, inside_photo = roots[keep], in_thinning[keep], inside_photo[keep]
    angle = rng.uniform(0, 2 * np.pi) + rng.normal(0.0, 0.35, len(roots))
    tips = roots + length * rng.uniform(0.8, 1.2, (len(roots), 1)) * np.stack(
        [np.cos(angle), np.sin(angle)], axis=1
    )
    canvas = np.zeros((height * SUPERSAMPLE, width * SUPERSAMPLE), np.uint8)
    thickness = max(1, round(strand_width_mm / mm_per_pixel * SUPERSAMPLE))
    to_canvas = lambda p: np.round((p + 0.5) * SUPERSAMPLE - 0.5).astype(np.int32)  # noqa: E731
    for start, end in zip(to_canvas(roots), to_canvas(tips), strict=True):
        cv2.line(canvas, tuple(start.tolist()), tuple(end.tolist()), 255, thickness, cv2.LINE_8)
    alpha = cv2.resize(
        canvas.astype(np.float32) / 255.0, (width, height), interpolation=cv2.INTER_AREA
    )
    hair_lab = rng.uniform(*DARK_HAIR)
    hair_rgb = lab_to_rgb(hair_lab).astype(np.float32)
    rgb = rgb * (1.0 - alpha[..., None]) + alpha[..., None] * hair_rgb
    rgb = cv2.GaussianBlur(rgb, (0, 0), 0.5)
    out = np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)
    healthy = inside_photo & ~in_thinning
    healthy_area_cm2 = float(np.count_nonzero(~thinning)) * mm_per_pixel**2 / 100.0
    truth = {
        "mm_per_pixel": mm_per_pixel,
        "nominal_density_per_cm2": density_per_cm2,
        "density_per_cm2": float(np.count_nonzero(healthy)) / healthy_area_cm2,
        "strands_in_healthy_scalp": int(np.count_nonzero(healthy)),
        "healthy_area_cm2": healthy_area_cm2,
        "strand_width_mm": thickness / SUPERSAMPLE * mm_per_pixel,
        "strand_length_mm": strand_length_mm,
        "hair_lab": [round(float(v), 3) for v in hair_lab],
        "roots": roots[inside_photo].tolist(),
    }
    return ScalpCloseUp(out, mask, truth)


@dataclass(frozen=True)
class ScalpView:
    name: str
    rgb: np.ndarray
    mask: np.ndarray
    loss_fraction: float  # share of the view's pixels in the thinning mask
    hair_alpha: np.ndarray  # float32 [H, W] strand coverage drawn (truth)


def _loss_region(rng: np.random.Generator, shape: tuple[int, int], share: float) -> np.ndarray:
    """A smooth blob (threshold of band-limited noise plus a pull to one spot) covering exactly
    round(share x pixels) pixels (ties broken by order)."""
    height, width = shape
    if share <= 0:
        return np.zeros(shape, bool)
    field = smooth_noise(rng, shape, 0.35 * min(shape))
    centre = rng.uniform((0.3 * width, 0.3 * height), (0.7 * width, 0.7 * height))
    ys, xs = np.mgrid[0:height, 0:width]
    field -= 2.5 * np.hypot(xs - centre[0], ys - centre[1]) / max(shape)
    count = round(share * field.size)
    order = np.argsort(-field.ravel(), kind="stable")
    region = np.zeros(field.size, bool)
    region[order[:count]] = True
    return region.reshape(shape)


def salt_views(
    seed: int, shares: dict[str, float], size: tuple[int, int] = (192, 160)
) -> tuple[list[ScalpView], dict]:
    """Four scalp photos with a thinning region covering `shares[view]` of each; truth: each
    view's loss fraction and SALT = sum of weight x percent loss."""
    width, height = size
    views = []
    for index, name in enumerate(SALT_WEIGHTS):
        rng = np.random.default_rng([seed, index])
        scene = sample_scene(rng, width, height, "scalp", False)
        region = _loss_region(rng, (height, width), shares.get(name, 0.0))
        mask = np.where(region, THINNING, 0).astype(np.uint8)
        rendering = render(rng, dataclasses.replace(scene, mask=mask))
        views.append(
            ScalpView(name, rendering.rgb, mask, float(region.mean()), rendering.hair_alpha)
        )
    salt = sum(SALT_WEIGHTS[v.name] * 100.0 * v.loss_fraction for v in views)
    return views, {"loss_fraction": {v.name: v.loss_fraction for v in views}, "salt": salt}
