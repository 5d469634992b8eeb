"""Shared fixtures: small real image files and datasets written into tmp folders."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def write_image(path: Path, array: np.ndarray, **save_kwargs) -> Path:
    """Save a uint8 array with Pillow (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **save_kwargs)
    return path


def random_photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def blob_mask(height: int, width: int, values: tuple[int, ...] = (1, 2, 3)) -> np.ndarray:
    """A mask with one rectangle per value, left to right, on a 0 background."""
    mask = np.zeros((height, width), np.uint8)
    step = width // (len(values) + 1)
    for i, value in enumerate(values):
        mask[height // 4 : height // 2, step * i + 2 : step * i + step - 2] = value
    return mask


def make_mask_dataset(
    root: Path,
    n: int = 6,
    size: tuple[int, int] = (48, 40),
    values: tuple[int, ...] = (1, 2, 3),
    seed: int = 0,
    yaml_text: str | None = None,
) -> Path:
    """A mask-folder dataset of `n` random photos (PNG) with blob masks; returns its root."""
    rng = np.random.default_rng(seed)
    width, height = size
    for i in range(n):
        write_image(root / "images" / f"p{i:02d}.png", random_photo(rng, height, width))
        write_image(root / "masks" / f"p{i:02d}.png", blob_mask(height, width, values))
    if yaml_text is not None:
        (root / "dataset.yaml").write_text(yaml_text)
    return root


@pytest.fixture
def mask_dataset(tmp_path: Path) -> Path:
    return make_mask_dataset(tmp_path / "ds")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed `dermaseg` command in a real subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "dermaseg", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def make_tiny_checkpoint(folder: Path, overrides: tuple[str, ...] = ()) -> Path:
    """A small random-init checkpoint with the sidecar the trainer writes (needs torch);
    `overrides`: more key=value settings for its recipe."""
    import torch

    from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
    from dermaseg.train.checkpoint import save_checkpoint
    from dermaseg.train.config import load_run_config
    from dermaseg.train.model import build_model
    from dermaseg.train.trainer import checkpoint_meta

    config = load_run_config(
        "synthetic-demo",
        [
            "data=unused",
            "model.encoder_weights=null",
            "model.decoder_channels=[16,16,16,16,8]",
            "input.size=64",
            *overrides,
        ],
    )
    torch.manual_seed(0)
    model = build_model(config.model, DEFAULT_TAXONOMY.num_classes)
    meta = checkpoint_meta(config, DEFAULT_TAXONOMY, 1, {"mean_dice": 0.5}, world_size=1)
    stem = folder / "weights" / "best"
    save_checkpoint(stem, model.state_dict(), meta)
    return stem.with_suffix(".safetensors")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny verified planning model (working size 96), exported once per test session."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from dermaseg.train.export import export_checkpoint

    folder = tmp_path_factory.mktemp("tiny_model")
    export_checkpoint(make_tiny_checkpoint(folder), folder / "model.onnx", working_size=96)
    return folder / "model.onnx"


@pytest.fixture(scope="session")
def dermaseg_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project built as a wheel (no dependencies), once per test session."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(folder), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = folder.glob("dermaseg-*.whl")
    return wheel
