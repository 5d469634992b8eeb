"""A real `dermaseg plan` output folder for the review desk's tests (planned from true masks of
synthetic photos, with a clinic config, a procedure and patient fields)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from tests.conftest import run_cli

SEEDS = (1, 6)  # photos with vitiligo and scars
CLINIC = "procedures:\n  vitiligo-camouflage:\n    margin_mm: 1.5\n"


def write_photos(folder: Path, seeds=SEEDS, size: int = 160) -> dict[str, np.ndarray]:
    """JPEG photos in `folder` and their true class-id masks in `folder/masks` (by name)."""
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    masks = {}
    for seed in seeds:
        photo = generate_photo(seed, size, with_marker=True, photo_id=f"p{seed}")
        Image.fromarray(photo.rgb).save(folder / f"p{seed}.jpg", quality=95)
        (folder / "masks" / f"p{seed}.png").write_bytes(
            encode_png(photo.mask, palette=DEFAULT_TAXONOMY.palette)
        )
        masks[f"p{seed}"] = photo.mask
    return masks


def make_plan_folder(root: Path, seeds=SEEDS, size: int = 160) -> Path:
    """`dermaseg plan` of synthetic photos into root/out; returns that folder."""
    write_photos(root / "in", seeds, size)
    (root / "clinic.yaml").write_text(CLINIC)
    out = root / "out"
    result = run_cli(
        "plan",
        str(root / "in"),
        "--mask",
        str(root / "in" / "masks"),
        "--out",
        str(out),
        "--procedure",
        "vitiligo-camouflage",
        "--clinic-config",
        str(root / "clinic.yaml"),
        "--meta",
        "patient=P-7",
        "--meta",
        "body_site=left forearm",
    )
    assert result.returncode == 0, result.stderr
    return out
