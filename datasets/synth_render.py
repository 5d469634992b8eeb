"""Colouring a scene: skin texture, lesions, hair, the marker sticker, lighting and the camera.

Lesions are blended with an alpha that is at least 0.5 on every labelled pixel and at most 0.25
on the first unlabelled pixel (0 beyond), so the mask stays the honest truth at the borders.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.synth_scene import SCAR, THINNING, VITILIGO, HairStyle, Scene, VitiligoStyle
from dermaseg.datasets.synth_shapes import MARKER_CELLS, QUIET_CELLS, SUBPIXEL_BITS, MarkerPlacement

MARKER_DICTIONARY = "DICT_4X4_50"
MARKER_ID = 7
SUPERSAMPLE = 4  # sticker edges are drawn at 4x and averaged down (anti-aliasing)
HAIR_STEPS = 10  # segments per strand
MINIATURISED = 0.6  # length of strands rooted in thinning regions, relative to the others


@dataclass(frozen=True)
class Rendering:
    rgb: np.ndarray  # uint8 [H, W, 3], before JPEG
    hair_alpha: np.ndarray  # float32 [H, W], strand coverage 0..1
    marker_alpha: np.ndarray  # float32 [H, W], sticker coverage 0..1


@dataclass(frozen=True)
class SkinTexture:
    mottle: np.ndarray  # float32 [H, W, 3], slow CIELAB variation
    detail: np.ndarray  # float32 [H, W], fine L* variation: pores, creases, grain


def render(rng: np.random.Generator, scene: Scene) -> Rendering:
    """Colour every pixel of `scene`."""
    shape = (scene.height, scene.width)
    texture = skin_texture(rng, shape, scene.mm_per_pixel)
    lab = texture.mottle + scene.skin_lab.astype(np.float32)
    lab[..., 0] += texture.detail
    _add_moles(rng, lab)
    _paint_vitiligo(rng, lab, texture, scene)
    _paint_scars(lab, texture, scene)
    rgb = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
    hair_alpha = np.zeros(shape, np.float32)
    if scene.hair is not None:
        hair_alpha = _draw_hair(rng, rgb, scene.hair, scene.mask == THINNING)
    marker_alpha = np.zeros(shape, np.float32)
    if scene.marker is not None:
        marker_alpha = _paste_marker(rng, rgb, scene.marker)
    rgb *= _lighting(rng, shape)[..., None]
    return Rendering(_camera(rng, rgb), hair_alpha, marker_alpha)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (L* 0..100) to sRGB floats 0..1, clipped to the gamut."""
    pixel = np.asarray(lab, np.float32).reshape(-1, 1, 3)
    return np.clip(cv2.cvtColor(pixel, cv2.COLOR_Lab2RGB), 0.0, 1.0).reshape(np.shape(lab))


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], scale: float, channels: int = 1
) -> np.ndarray:
    """Band-limited noise (roughly unit variance) varying over about `scale` pixels."""
    height, width = shape
    grid = (max(2, int(np.ceil(height / scale)) + 1), max(2, int(np.ceil(width / scale)) + 1))
    coarse = rng.standard_normal((*grid, channels), dtype=np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    return field.reshape(height, width, channels) if channels > 1 else field.reshape(shape)


def uniform_noise(rng: np.random.Generator, shape: tuple[int, ...], std: float) -> np.ndarray:
    """Zero-mean uniform noise with standard deviation `std` (fast: one random byte a value)."""
    raw = np.frombuffer(rng.bytes(int(np.prod(shape))), np.int8).reshape(shape)
    return raw.astype(np.float32) * np.float32(std / 73.9)  # 73.9 = std of uniform int8


def skin_texture(
    rng: np.random.Generator, shape: tuple[int, int], mm_per_pixel: float
) -> SkinTexture:
    """Mottling at two scales, plus pores (spaced in millimetres), creases and grain."""
    detail = _pores(rng, shape, mm_per_pixel) + _creases(rng, shape)
    detail += uniform_noise(rng, shape, 0.8)
    return SkinTexture(_mottle(rng, shape), detail)


def _mottle(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Slow blotchy CIELAB variation at two scales, built at quarter resolution."""
    height, width = shape
    low = (max(2, height // 4), max(2, width // 4))
    short = min(low)
    field = smooth_noise(rng, low, 0.25 * short, 3) * np.float32([2.5, 1.5, 1.2])
    field += smooth_noise(rng, low, 0.06 * short, 3) * np.float32([1.5, 1.0, 0.6])
    return cv2.resize(field, (width, height), interpolation=cv2.INTER_LINEAR)


def _pores(rng: np.random.Generator, shape: tuple[int, int], mm_per_pixel: float) -> np.ndarray:
    """Small dark dots about 0.7 mm apart (at least 2.5 px), a few L* units deep."""
    spacing = float(np.clip(0.7 / mm_per_pixel, 2.5, 12.0))
    sigma = max(0.6, 0.2 * spacing)
    canvas = np.zeros(shape, np.float32)
    count = int(canvas.size / spacing**2)
    depth = rng.uniform(2.0, 5.0) * 2.0 * np.pi * sigma**2
    canvas.flat[rng.integers(0, canvas.size, count)] = -depth * rng.uniform(0.4, 1.0, count)
    return cv2.GaussianBlur(canvas, (0, 0), sigma)


def _creases(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Faint, roughly parallel skin lines."""
    height, width = shape
    canvas = np.zeros(shape, np.uint8)
    count = int(rng.integers(10, 40))
    angle = rng.uniform(0.0, np.pi) + rng.normal(0.0, 0.2, count)
    length = min(shape) * rng.uniform(0.05, 0.3, count)
    mid = rng.uniform((0.0, 0.0), (width, height), (count, 2))
    half = 0.5 * length[:, None] * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    lines = np.round(np.stack([mid - half, mid + half], axis=1) * (1 << SUBPIXEL_BITS))
    cv2.polylines(canvas, list(lines.astype(np.int32)), False, 255, 1, cv2.LINE_AA, SUBPIXEL_BITS)
    return canvas.astype(np.float32) * np.float32(-rng.uniform(1.0, 2.5) / 255.0)


def _add_moles(rng: np.random.Generator, lab: np.ndarray) -> None:
    """A few small brown spots: skin features that are not lesions (they stay background)."""
    height, width = lab.shape[:2]
    for _ in range(int(rng.integers(0, 6))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        radius = int(rng.integers(1, 4))
        rows, cols = _window((y, y + 1), (x, x + 1), radius + 3, lab.shape)
        spot = np.zeros((rows.stop - rows.start, cols.stop - cols.start), np.float32)
        cv2.circle(spot, (x - cols.start, y - rows.start), radius, 1.0, -1, cv2.LINE_8)
        spot = cv2.GaussianBlur(spot, (0, 0), 0.8)
        lab[rows, cols] += spot[..., None] * np.float32([-22.0, 4.0, 8.0])


def _window(
    rows: tuple[int, int], cols: tuple[int, int], margin: int, shape: tuple[int, ...]
) -> tuple[slice, slice]:
    """Row and column slices of a [start, stop) box grown by `margin`, clipped to `shape`."""
    return (
        slice(max(0, rows[0] - margin), min(shape[0], rows[1] + margin)),
        slice(max(0, cols[0] - margin), min(shape[1], cols[1] + margin)),
    )


def region_window(region: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Slices around the region's bounding box, grown by `margin`."""
    x, y, w, h = cv2.boundingRect(region.astype(np.uint8))
    return _window((y, y + h), (x, x + w), margin, region.shape)


def edge_distances(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance to the region's outside (for inside pixels) and to its inside (for outside ones)."""
    inside = region.astype(np.uint8)
    return (
        cv2.distanceTransform(inside, cv2.DIST_L2, 3),
        cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3),
    )


def soft_alpha(inside: np.ndarray, outside: np.ndarray, edge_px: float) -> np.ndarray:
    """Blend weight: ramps from ~0.5 at the border to 1 over `edge_px` inside; 0.25 just outside."""
    ramp_in = 0.5 + (inside - 0.5) / (2.0 * edge_px)
    ramp_out = 0.5 - (outside - 0.5) * 0.5
    return np.clip(np.where(inside > 0, ramp_in, ramp_out), 0.0, 1.0).astype(np.float32)


def blend_towards(lab: np.ndarray, target: np.ndarray, alpha: np.ndarray) -> None:
    """Move `lab` towards `target` in place, by `alpha` (HxW, 0..1) per pixel."""
    lab += alpha[..., None] * (target - lab)


def _paint_vitiligo(
    rng: np.random.Generator, lab: np.ndarray, texture: SkinTexture, scene: Scene
) -> None:
    """Milky depigmented patches, sometimes partly pigmented, sometimes with a darker rim."""
    style = scene.vitiligo
    window = region_window(scene.mask == VITILIGO, int(5 * style.rim_px) + 2)
    region = scene.mask[window] == VITILIGO
    if not region.any():
        return
    lab, mottle, detail = lab[window], texture.mottle[window], texture.detail[window]
    inside, outside = edge_distances(region)
    darken_rim(lab, outside, style)
    depigmented = depigmentation(rng, style, inside, 0.1 * min(scene.mask.shape))
    base = scene.skin_lab.astype(np.float32)
    target = base + depigmented * (style.lab - base).astype(np.float32)
    target += 0.7 * mottle
    target[..., 0] += detail
    blend_towards(lab, target, soft_alpha(inside, outside, style.edge_px))


def darken_rim(lab: np.ndarray, outside: np.ndarray, style: VitiligoStyle) -> None:
    """Darken the skin just outside a vitiligo patch (a dark rim), if the style has one."""
    if style.rim_dl:
        rim = np.exp(-outside / np.float32(style.rim_px)) * (outside > 0)
        lab -= rim[..., None] * (style.rim_dl * np.float32([1.0, 0.0, -0.4]))


def depigmentation(
    rng: np.random.Generator, style: VitiligoStyle, inside: np.ndarray, scale_px: float
) -> np.ndarray:
    """How far (0..1, HxWx1) each patch pixel goes from the skin to the patch's colour: the
    style's depigmentation varied smoothly over `scale_px`, less near the edge if trichrome."""
    variation = smooth_noise(rng, inside.shape, scale_px)
    depigmented = style.depigmentation + 0.12 * variation
    if style.trichrome_px:
        depigmented *= 1.0 - 0.45 * np.exp(-inside / np.float32(style.trichrome_px))
    return np.clip(depigmented, 0.0, 1.0)[..., None]


def _paint_scars(lab: np.ndarray, texture: SkinTexture, scene: Scene) -> None:
    """Smooth streaks with little texture, optionally shaded as if raised."""
    window = region_window(scene.mask == SCAR, 2)
    region = scene.mask[window] == SCAR
    if not region.any():
        return
    style = scene.scar
    lab, mottle, detail = lab[window], texture.mottle[window], texture.detail[window]
    inside, outside = edge_distances(region)
    target = 0.3 * mottle + (scene.skin_lab + style.delta_lab).astype(np.float32)
    target[..., 0] += 0.35 * detail
    if style.relief:
        target[..., 0] += style.relief * relief_shading(inside, style.edge_px + 1.5)
    target[..., 0] = np.minimum(target[..., 0], 97.0)
    blend_towards(lab, target, soft_alpha(inside, outside, style.edge_px))


def relief_shading(inside: np.ndarray, rise_px: float) -> np.ndarray:
    """Shading in -1..1 of a ridge whose height rises over `rise_px` from the scar's edge."""
    height = 1.0 - np.exp(-inside / rise_px)
    gx = cv2.Sobel(height, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(height, cv2.CV_32F, 0, 1, ksize=3)
    return np.clip((gy - gx) * (rise_px / 4.0), -1.0, 1.0)


def _hair_paths(
    rng: np.random.Generator, style: HairStyle, thinning: np.ndarray
) -> list[np.ndarray]:
    """Strand polylines (fixed-point, SUBPIXEL_BITS) combed along a slowly turning direction.

    Roots inside thinning regions are kept with probability `thinning_density` and grow shorter
    (miniaturised) strands; strands rooted outside stop within two segments of entering a thinning
    region, so the density drop is where the mask says.
    """
    height, width = thinning.shape
    length = style.length_px
    margin = 0.5 * length
    count = int(style.coverage * (width + length) * (height + length) / (1.6 * length))
    roots = rng.uniform((-margin, -margin), (width + margin, height + margin), (count, 2))
    rooted_in = _lookup(thinning, roots)
    roots = roots[rng.random(count) < np.where(rooted_in, style.thinning_density, 1.0)]
    rooted_in = _lookup(thinning, roots)
    turning = smooth_noise(rng, thinning.shape, 0.3 * min(height, width))
    field = style.angle + style.waviness * turning
    curl = rng.normal(0.0, 0.04, len(roots))
    step_px = (length / HAIR_STEPS) * np.where(rooted_in, MINIATURISED, 1.0)[:, None]
    points = np.empty((len(roots), HAIR_STEPS + 1, 2))
    points[:, 0] = roots
    for step in range(HAIR_STEPS):
        angle = _lookup(field, points[:, step]) + curl * step
        points[:, step + 1] = points[:, step] + step_px * np.stack(
            [np.cos(angle), np.sin(angle)], axis=1
        )
    entered = np.stack([_lookup(thinning, points[:, s]) for s in range(HAIR_STEPS + 1)], axis=1)
    first_in = np.where(entered.any(axis=1), entered.argmax(axis=1), HAIR_STEPS)
    overshoot = rng.integers(0, 3, len(roots))
    last = np.where(rooted_in, HAIR_STEPS, np.minimum(first_in + overshoot, HAIR_STEPS))
    fixed = np.round(points * (1 << SUBPIXEL_BITS)).astype(np.int32)
    return [fixed[i, : max(2, last[i] + 1)] for i in range(len(roots))]


def _lookup(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values of `image` at the nearest pixel to each (x, y), clamped to the borders."""
    height, width = image.shape[:2]
    cols = np.clip(np.round(points[:, 0]).astype(np.intp), 0, width - 1)
    rows = np.clip(np.round(points[:, 1]).astype(np.intp), 0, height - 1)
    return image[rows, cols]


def _draw_hair(
    rng: np.random.Generator, rgb: np.ndarray, style: HairStyle, thinning: np.ndarray
) -> np.ndarray:
    """Draw anti-aliased strands in their group colours onto `rgb`; returns the coverage.

    OpenCV anti-aliases only on 8-bit images, so the strands are drawn on an 8-bit copy.
    """
    paths = _hair_paths(rng, style, thinning)
    group = rng.integers(0, len(style.group_lab), len(paths))
    canvas = np.clip(rgb * np.float32(255.0) + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
    for g, colour in enumerate(lab_to_rgb(style.group_lab) * 255.0):
        strands = [paths[i] for i in np.flatnonzero(group == g)]
        cv2.polylines(canvas, strands, False, colour.tolist(), 1, cv2.LINE_AA, SUBPIXEL_BITS)
    rgb[:] = canvas.astype(np.float32) * np.float32(1.0 / 255.0)
    coverage = np.zeros(thinning.shape, np.uint8)
    cv2.polylines(coverage, paths, False, 255, 1, cv2.LINE_AA, SUBPIXEL_BITS)
    return coverage.astype(np.float32) * np.float32(1.0 / 255.0)


def marker_cells(marker_id: int = MARKER_ID) -> np.ndarray:
    """The marker as one pixel per cell, white quiet zone included: float32, 1 = paper, 0 = ink."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, MARKER_DICTIONARY))
    cells = cv2.aruco.generateImageMarker(dictionary, marker_id, MARKER_CELLS, borderBits=1)
    padded = np.pad(cells, QUIET_CELLS, constant_values=255)
    return (padded / 255.0).astype(np.float32)


def _paste_marker(rng: np.random.Generator, rgb: np.ndarray, marker: MarkerPlacement) -> np.ndarray:
    """Lay the sticker flat on the photo (in-plane rotation only); returns its coverage."""
    height, width = rgb.shape[:2]
    footprint = marker.footprint()
    x0, y0 = np.maximum(np.floor(footprint.min(axis=0)).astype(int) - 1, 0)
    x1 = min(int(np.ceil(footprint[:, 0].max())) + 2, width)
    y1 = min(int(np.ceil(footprint[:, 1].max())) + 2, height)
    cells = marker_cells()
    transform = _cells_to_canvas(marker, cells.shape[0], (x0, y0))
    size = ((x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE)
    paper, cover = (
        cv2.resize(
            cv2.warpAffine(image, transform, size, flags=cv2.INTER_NEAREST, borderValue=0),
            (x1 - x0, y1 - y0),
            interpolation=cv2.INTER_AREA,
        )
        for image in (cells, np.ones_like(cells))
    )
    paper_rgb = lab_to_rgb([rng.uniform(90, 97), rng.uniform(0, 1), rng.uniform(0, 4)])
    ink_rgb = lab_to_rgb([rng.uniform(8, 16), 0.0, rng.uniform(-2, 2)])
    crop = rgb[y0:y1, x0:x1]
    crop *= (1.0 - cover)[..., None]
    crop += paper[..., None] * paper_rgb + (cover - paper)[..., None] * ink_rgb
    alpha = np.zeros((height, width), np.float32)
    alpha[y0:y1, x0:x1] = cover
    return alpha


def _cells_to_canvas(marker: MarkerPlacement, cells: int, origin: tuple[int, int]) -> np.ndarray:
    """Affine map from cell-image pixel centres to supersampled canvas pixel centres."""
    c, s = np.cos(marker.angle), np.sin(marker.angle)
    linear = SUPERSAMPLE * marker.cell_px * np.array([[c, -s], [s, c]])
    # photo coordinate of cell-image pixel centre i: center + linear/SUPERSAMPLE @ (i + 0.5 - n/2)
    # canvas pixel centre of photo coordinate p: SUPERSAMPLE * (p - origin + 0.5) - 0.5
    offset = SUPERSAMPLE * (np.asarray(marker.center) - np.asarray(origin) + 0.5) - 0.5
    offset += linear @ np.full(2, 0.5 - cells / 2.0)
    return np.hstack([linear, offset[:, None]]).astype(np.float64)


def _lighting(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A gradient, vignetting and sometimes a soft-edged shadow, as a factor on sRGB values."""
    height, width = shape
    grid = (max(2, height // 8), max(2, width // 8))
    y, x = np.mgrid[-1 : 1 : complex(grid[0]), -1 : 1 : complex(grid[1])]
    x *= width / max(height, width)
    y *= height / max(height, width)
    light = 1.0 + rng.uniform(0.0, 0.25) * _along(x, y, rng.uniform(0.0, 2.0 * np.pi))
    light *= 1.0 - rng.uniform(0.0, 0.25) * (x**2 + y**2) / 2.0
    if rng.random() < 0.5:
        direction = rng.uniform(0.0, 2.0 * np.pi)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        wave = 0.15 * np.sin(3.0 * _along(x, y, direction + np.pi / 2) + phase)
        edge = (_along(x, y, direction) - rng.uniform(0.2, 0.8) + wave) / rng.uniform(0.05, 0.2)
        light *= 1.0 - rng.uniform(0.15, 0.4) / (1.0 + np.exp(-edge))
    light = (light ** (1.0 / 2.2)).astype(np.float32)
    return cv2.resize(light, (width, height), interpolation=cv2.INTER_LINEAR)


def _along(x: np.ndarray, y: np.ndarray, angle: float) -> np.ndarray:
    return x * np.cos(angle) + y * np.sin(angle)


def _camera(rng: np.random.Generator, rgb: np.ndarray) -> np.ndarray:
    """Slight defocus and sensor noise, then 8-bit quantisation."""
    sigma = rng.uniform(0.0, 0.9)
    if sigma > 0.3:
        rgb = cv2.GaussianBlur(rgb, (0, 0), sigma)
    rgb = rgb * np.float32(255.0) + uniform_noise(rng, rgb.shape, rng.uniform(1.0, 3.0))
    return np.clip(rgb + np.float32(0.5), 0.0, 255.0).astype(np.uint8)
