"""Synthetic patches on real photos: depigmented (vitiligo) patches and scars painted onto
photos you supply, with exact truth (`dermaseg data synth --onto FOLDER`).

Synthetic photos alone do not transfer to real ones (the demo model scored vitiligo Dice 0.255
on real vitiligo photos); painting lesions onto real skin keeps the real camera, light, texture
and surroundings (the facial-vitiligo study that reached 1 % area error trained this way). The
shapes and colours are those of `synth_scene`; the colour is painted relative to the photo's own
local skin colour (a smooth estimate over its skin pixels), so a patch keeps the pores and shading
of the skin under it. Lesions are placed only where the photo shows skin (a YCrCb skin rule),
whole, so no patch spills onto clothes, hair or background.

The truth is exact for what was painted; anything the source photo already shows (a real patch
or scar) is labelled background, so give photos of skin without the classes. Thinning is not
painted (it would need real strands removed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dermaseg.datasets.images import IMAGE_SUFFIXES, encode_jpeg, encode_png, load_image
from dermaseg.datasets.synth import DATASET_YAML, photo_seed
from dermaseg.datasets.synth_render import (
    blend_towards,
    darken_rim,
    depigmentation,
    edge_distances,
    region_window,
    relief_shading,
    soft_alpha,
)
from dermaseg.datasets.synth_scene import (
    SCAR,
    VITILIGO,
    add_scars,
    add_vitiligo,
    scar_style,
    vitiligo_style,
)
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import InputError, OutputExistsError
from dermaseg.fileio import write_bytes, write_json, write_text

# skin in YCrCb (Chai and Ngan's rule, widened a little for dark and pale skin)
CR_RANGE = (133, 180)
CB_RANGE = (75, 135)
MAX_SIDE = 2048  # source photos are shrunk to at most this longer side
JPEG_QUALITY = 92
GENERATOR = "dermaseg.synth.onto"
MIN_SKIN_SHARE = 0.05  # photos with less skin than this are not painted
SKIN_COLOUR_SCALE = 0.05  # local skin colour: smoothed over this share of the shorter side


class TooLittleSkin(ValueError):
    """The photo shows too little skin to paint on."""


@dataclass(frozen=True)
class PaintedPhoto:
    rgb: np.ndarray  # uint8 [H, W, 3]
    mask: np.ndarray  # uint8 [H, W] class ids of the default taxonomy
    skin_share: float  # share of the photo the skin rule called skin


def skin_pixels(rgb: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose colour is skin by the YCrCb rule, small specks and thin gaps
    smoothed away (opening and closing)."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    skin = cv2.inRange(ycrcb, (40, CR_RANGE[0], CB_RANGE[0]), (250, CR_RANGE[1], CB_RANGE[1]))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    skin = cv2.morphologyEx(skin, cv2.MORPH_OPEN, kernel)
    return cv2.morphologyEx(skin, cv2.MORPH_CLOSE, kernel) > 0


def local_skin_lab(lab: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """float32 [H, W, 3]: the skin colour around each pixel (normalised Gaussian smoothing of
    the skin pixels' CIELAB), the photo's mean skin colour where no skin is near."""
    sigma = max(2.0, SKIN_COLOUR_SCALE * min(skin.shape))
    weight = skin.astype(np.float32)
    total = cv2.GaussianBlur(weight, (0, 0), sigma)
    summed = cv2.GaussianBlur(lab * weight[..., None], (0, 0), sigma)
    mean = lab[skin].mean(axis=0)
    near = total[..., None] > 1e-3
    return np.where(near, summed / np.maximum(total[..., None], 1e-3), mean).astype(np.float32)


def usable_skin(rgb: np.ndarray) -> np.ndarray:
    """The photo's skin pixels (`skin_pixels`); raises TooLittleSkin when they are under
    MIN_SKIN_SHARE of it."""
    skin = skin_pixels(rgb)
    share = float(skin.mean())
    if share < MIN_SKIN_SHARE:
        raise TooLittleSkin(f"{100 * share:.1f} % of the photo is skin (need {MIN_SKIN_SHARE:.0%})")
    return skin


def paint_onto(
    rng: np.random.Generator, rgb: np.ndarray, scars: bool = True, skin: np.ndarray | None = None
) -> PaintedPhoto:
    """Paint 1-5 depigmented patches (and, with `scars`, sometimes 1-3 scars) onto the skin of
    an RGB uint8 photo; `skin`: its `usable_skin`, computed here when not given (raises
    TooLittleSkin)."""
    skin = usable_skin(rgb) if skin is None else skin
    share = float(skin.mean())
    mask = np.zeros(skin.shape, np.uint8)
    off_skin = (~skin).astype(np.uint8)  # shapes must lie wholly on skin
    add_vitiligo(rng, mask, off_skin)
    if scars and rng.random() < 0.5:
        add_scars(rng, mask, off_skin | (mask > 0))
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    base = local_skin_lab(lab, skin)
    short = min(skin.shape)
    _paint_depigmented(rng, lab, base, mask == VITILIGO, short)
    _paint_scar(rng, lab, mask == SCAR)
    out = np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)
    return PaintedPhoto(np.round(out * 255).astype(np.uint8), mask, round(share, 4))


def _paint_depigmented(
    rng: np.random.Generator, lab: np.ndarray, base: np.ndarray, region: np.ndarray, short: int
) -> None:
    """Move the skin towards a depigmented colour, keeping the photo's own texture."""
    if not region.any():
        return
    style = vitiligo_style(rng, short)
    window = region_window(region, int(5 * style.rim_px) + 2)
    lab, base, region = lab[window], base[window], region[window]
    inside, outside = edge_distances(region)
    darken_rim(lab, outside, style)
    depigmented = depigmentation(rng, style, inside, 0.1 * short)
    texture = lab - base  # pores, creases, shading: kept, a little flattened
    target = base + depigmented * (style.lab.astype(np.float32) - base) + 0.7 * texture
    blend_towards(lab, target, soft_alpha(inside, outside, style.edge_px))


def _paint_scar(rng: np.random.Generator, lab: np.ndarray, region: np.ndarray) -> None:
    """Shift the skin's colour by a scar's offset, optionally shaded as if raised."""
    if not region.any():
        return
    style = scar_style(rng)
    window = region_window(region, 2)
    lab, region = lab[window], region[window]
    inside, outside = edge_distances(region)
    target = lab + style.delta_lab.astype(np.float32)
    if style.relief:
        target[..., 0] += style.relief * relief_shading(inside, style.edge_px + 1.5)
    target[..., 0] = np.minimum(target[..., 0], 97.0)
    blend_towards(lab, target, soft_alpha(inside, outside, style.edge_px))


def truth_areas(mask: np.ndarray) -> dict[str, int]:
    """Pixels of each painted class (the default taxonomy's names)."""
    counts = np.bincount(mask.ravel(), minlength=DEFAULT_TAXONOMY.num_classes)
    return {name: int(counts[i]) for i, name in enumerate(DEFAULT_TAXONOMY.names) if i}


def source_photos(folder: Path) -> list[Path]:
    """The photos directly in `folder` (image suffixes), sorted by name."""
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _shrunk(rgb: np.ndarray) -> np.ndarray:
    factor = MAX_SIDE / max(rgb.shape[:2])
    if factor >= 1:
        return rgb
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def generate_onto_dataset(
    out: Path,
    sources: list[Path],
    n: int,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict, list[str]]:
    """Write a mask-folder dataset of `n` photos painted onto `sources` (taken in turn; photo i
    depends only on seed, i and its source) and return its manifest and one line per source
    that could not be used (unreadable, too little skin). Refuses a folder holding a dataset."""
    out = Path(out)
    for name in ("manifest.json", "dataset.yaml"):
        if (out / name).exists():
            raise OutputExistsError(out / name)
    usable, failures = [], []
    for path in sources:
        try:
            rgb = _shrunk(load_image(path))
        except InputError as error:
            failures.append(str(error))
            continue
        try:
            skin = usable_skin(rgb)
        except TooLittleSkin as why:
            failures.append(f"{path}: not painted: {why}")
            continue
        usable.append((path, rgb, skin))
    entries = []
    for index in range(n if usable else 0):
        path, rgb, skin = usable[index % len(usable)]
        painted = paint_onto(np.random.default_rng(photo_seed(seed, index)), rgb, skin=skin)
        if progress is not None:
            progress(1)
        photo_id = f"onto_{index:05d}"
        entry = {
            "id": photo_id,
            "image": f"images/{photo_id}.jpg",
            "mask": f"masks/{photo_id}.png",
            "source": path.name,
            "width": int(rgb.shape[1]),
            "height": int(rgb.shape[0]),
            "skin_share": painted.skin_share,
            "areas_px": truth_areas(painted.mask),
        }
        write_bytes(out / entry["image"], encode_jpeg(painted.rgb, JPEG_QUALITY))
        write_bytes(out / entry["mask"], encode_png(painted.mask, palette=DEFAULT_TAXONOMY.palette))
        entries.append(entry)
    manifest = {
        "generator": GENERATOR,
        "version": 1,
        "seed": seed,
        "taxonomy": DEFAULT_TAXONOMY.names,
        "photos": entries,
    }
    if entries:
        write_text(out / "dataset.yaml", DATASET_YAML.format(seed=seed), overwrite=False)
        write_json(out / "manifest.json", manifest, overwrite=False)
    return manifest, failures
