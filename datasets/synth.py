"""Procedural clinical-style photos with exact ground truth: skin with vitiligo and scars, scalp
with thinning hair, and an ArUco marker that fixes the scale.

Each photo's region mask is drawn first and its pixels are coloured from it, so the mask is exact.
The manifest records, per photo, the scale, the marker's corners and the true colours:
`skin_lab`, patch `lab` and `surround_lab` are measured on the rendered uint8 image BEFORE JPEG
compression with OpenCV's 8-bit convention (rgb / 255 as float32 -> cv2.COLOR_RGB2Lab, L* 0..100),
as the mean of per-pixel CIELAB; `hair_lab` is the strands' paint colour (mean over strands).
Photo i depends only on (seed, i), never on how many photos are made.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import encode_jpeg, encode_png
from dermaseg.datasets.synth_render import (
    MARKER_DICTIONARY,
    MARKER_ID,
    Rendering,
    lab_to_rgb,
    render,
)
from dermaseg.datasets.synth_scene import MARKER_SIDE_MM, MIN_SIZE, Scene, sample_scene
from dermaseg.datasets.synth_truth import (
    BARE_HAIR,
    class_areas,
    lab_image,
    patches,
    rounded,
    skin_lab,
)
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import OutputExistsError
from dermaseg.fileio import write_bytes, write_json, write_text

GENERATOR = "dermaseg.synth"
VERSION = 1
KINDS = ("skin", "scalp")
SCALP_FRACTION = 1.0 / 3.0
GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0  # Weyl-sequence steps: marker and kind spread evenly over i
SILVER = np.sqrt(2.0) - 1.0
DATASET_YAML = """\
format: masks
images: images
masks: masks
split: {{seed: {seed}, val: 0.15, test: 0.15}}
"""


@dataclass(frozen=True)
class SynthPhoto:
    """One generated photo in memory: pixels before JPEG, exact mask, manifest entry."""

    rgb: np.ndarray  # uint8 [H, W, 3]
    mask: np.ndarray  # uint8 [H, W] class ids of DEFAULT_TAXONOMY
    entry: dict


def photo_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height) from a side length or a (width, height) pair; both at least MIN_SIZE."""
    width, height = (size, size) if isinstance(size, int) else size
    if min(width, height) < MIN_SIZE:
        raise ValueError(f"photo size {width}x{height} is too small; both sides need >= {MIN_SIZE}")
    return int(width), int(height)


def photo_seed(seed: int, index: int) -> int:
    """The seed of photo `index` in a dataset made with `seed` (independent of the count)."""
    sequence = np.random.SeedSequence(seed, spawn_key=(index,))
    return int(sequence.generate_state(1, np.uint64)[0])


def photo_plan(seed: int, index: int, marker_fraction: float) -> tuple[bool, str]:
    """Whether photo `index` shows a marker, and its kind; both spread evenly over any prefix."""
    marker_phase, kind_phase = np.random.default_rng(seed).random(2)
    with_marker = (marker_phase + index * GOLDEN) % 1.0 < marker_fraction
    kind = "scalp" if (kind_phase + index * SILVER) % 1.0 < SCALP_FRACTION else "skin"
    return bool(with_marker), kind


def generate_photo(
    rng_seed: int,
    size: int | tuple[int, int] = 512,
    with_marker: bool = True,
    *,
    kind: str | None = None,
    photo_id: str = "synth",
) -> SynthPhoto:
    """Make one photo from `rng_seed`; `kind` ("skin" or "scalp") is drawn at random if None."""
    width, height = photo_size(size)
    rng = np.random.default_rng(rng_seed)
    drawn_kind = "scalp" if rng.random() < SCALP_FRACTION else "skin"
    kind = kind or drawn_kind
    if kind not in KINDS:
        raise ValueError(f"unknown photo kind {kind!r}; choose from {KINDS}")
    scene = sample_scene(rng, width, height, kind, with_marker)
    rendering = render(rng, scene)
    entry = _entry(photo_id, rng_seed, scene, rendering)
    return SynthPhoto(rendering.rgb, scene.mask, entry)


def generate_dataset(
    out: Path,
    n: int,
    size: int | tuple[int, int] = 512,
    seed: int = 0,
    marker_fraction: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Write a mask-folder dataset of `n` photos into `out` and return its manifest.

    Files: images/<id>.jpg (no EXIF), masks/<id>.png (palette PNG of class ids), dataset.yaml and
    manifest.json (written last). Refuses a folder that already holds a dataset.
    """
    out = Path(out)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= marker_fraction <= 1.0:
        raise ValueError(f"marker_fraction must be in 0..1, got {marker_fraction}")
    photo_size(size)
    for name in ("manifest.json", "dataset.yaml"):
        if (out / name).exists():
            raise OutputExistsError(out / name)
    entries = []
    for index in range(n):
        with_marker, kind = photo_plan(seed, index, marker_fraction)
        photo = generate_photo(
            photo_seed(seed, index), size, with_marker, kind=kind, photo_id=f"synth_{index:05d}"
        )
        _write_photo(out, photo)
        entries.append(photo.entry)
        if progress is not None:
            progress(1)
    manifest = {
        "generator": GENERATOR,
        "version": VERSION,
        "seed": seed,
        "taxonomy": DEFAULT_TAXONOMY.names,
        "photos": entries,
    }
    write_text(out / "dataset.yaml", DATASET_YAML.format(seed=seed), overwrite=False)
    write_json(out / "manifest.json", manifest, overwrite=False)
    return manifest


def _write_photo(out: Path, photo: SynthPhoto) -> None:
    entry = photo.entry
    write_bytes(out / entry["image"], encode_jpeg(photo.rgb, entry["jpeg_quality"]))
    write_bytes(out / entry["mask"], encode_png(photo.mask, palette=DEFAULT_TAXONOMY.palette))


def _entry(photo_id: str, rng_seed: int, scene: Scene, rendering: Rendering) -> dict:
    """The manifest entry: what was drawn and the ground truth measured on the pixels."""
    names = DEFAULT_TAXONOMY.names
    scale = scene.mm_per_pixel if scene.marker is not None else None
    lab = lab_image(rendering.rgb)
    bare = (rendering.hair_alpha < BARE_HAIR) & (rendering.marker_alpha == 0)
    areas = class_areas(scene.mask, names)
    hair_lab = None if scene.hair is None else scene.hair.lab
    return {
        "id": photo_id,
        "image": f"images/{photo_id}.jpg",
        "mask": f"masks/{photo_id}.png",
        "width": scene.width,
        "height": scene.height,
        "kind": scene.kind,
        "seed": rng_seed,
        "jpeg_quality": scene.jpeg_quality,
        "mm_per_pixel": scale,
        "marker": _marker_entry(scene),
        "skin_lab": skin_lab(lab, scene.mask, bare),
        "hair_lab": None if hair_lab is None else rounded(hair_lab),
        "hair_hex": None if hair_lab is None else _hex(hair_lab),
        "class_area_px": areas,
        "class_area_mm2": None if scale is None else {k: v * scale**2 for k, v in areas.items()},
        "patches": patches(lab, scene.mask, bare, names, scale),
    }


def _marker_entry(scene: Scene) -> dict | None:
    if scene.marker is None:
        return None
    return {
        "dictionary": MARKER_DICTIONARY,
        "id": MARKER_ID,
        "side_mm": MARKER_SIDE_MM,
        "corners_px": [rounded(corner) for corner in scene.marker.corners()],
    }


def _hex(lab: np.ndarray) -> str:
    red, green, blue = np.round(lab_to_rgb(lab) * 255.0).astype(int)
    return f"#{red:02x}{green:02x}{blue:02x}"
