"""`dermaseg data synth --onto`: synthetic patches painted onto real photos, exact truth kept."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.images import load_image, load_mask
from dermaseg.datasets.synth_onto import TooLittleSkin, paint_onto, truth_areas
from dermaseg.datasets.synth_scene import SCAR, VITILIGO
from tests.conftest import run_cli, write_image

SKIN = (200, 150, 120)  # tan skin: inside the YCrCb skin rule
CLOTH = (30, 40, 160)  # a blue sleeve: outside it


def skin_and_cloth(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    """Textured skin on the left two thirds, blue cloth on the right third."""
    rng = np.random.default_rng(seed)
    rgb = np.empty((height, width, 3), np.float64)
    rgb[:] = SKIN
    rgb[:, 2 * width // 3 :] = CLOTH
    rgb += rng.normal(0, 4, rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def lightness(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2Lab)[..., 0]


def test_patches_lie_on_skin_only_and_the_truth_is_what_was_painted() -> None:
    rgb = skin_and_cloth()
    for seed in range(6):
        painted = paint_onto(np.random.default_rng(seed), rgb)
        mask = painted.mask
        assert (mask == VITILIGO).any(), seed
        assert not mask[:, 2 * 320 // 3 - 2 :].any()  # never on the cloth (2 px of closing)
        assert set(np.unique(mask)) <= {0, VITILIGO, SCAR}
        # depigmented: clearly lighter than the skin around it
        vitiligo = mask == VITILIGO
        assert lightness(painted.rgb)[vitiligo].mean() > lightness(rgb)[vitiligo].mean() + 8
        # away from the patches (rim, soft edge) the photo is untouched but for rounding
        far = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, 3) > 40
        diff = np.abs(painted.rgb.astype(int) - rgb.astype(int))[far]
        assert diff.max() <= 1, seed
        assert truth_areas(mask)["vitiligo"] == int(vitiligo.sum())


def test_a_photo_without_skin_is_refused() -> None:
    cloth = np.zeros((120, 160, 3), np.uint8)
    cloth[:] = CLOTH
    with pytest.raises(TooLittleSkin, match="skin"):
        paint_onto(np.random.default_rng(0), cloth)


def test_cli_paints_a_dataset_and_names_the_photos_it_could_not_use(tmp_path: Path) -> None:
    source = tmp_path / "mine"
    write_image(source / "arm.jpg", skin_and_cloth(seed=1), quality=95)
    write_image(source / "back.png", skin_and_cloth(200, 260, seed=2))
    write_image(source / "sleeve.png", np.full((100, 100, 3), CLOTH, np.uint8))
    (source / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    out = tmp_path / "onto"
    done = run_cli("data", "synth", "--onto", str(source), "--n", "6", "--out", str(out), "--json")
    assert done.returncode == 1, done.stderr  # two sources failed; the rest was written
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert any("broken.jpg" in line for line in errors)
    assert any("sleeve.png" in line and "skin" in line for line in errors)
    summary = json.loads(done.stdout)
    assert summary["photos"] == 6 and summary["sources"] == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert {p["source"] for p in manifest["photos"]} == {"arm.jpg", "back.png"}
    for entry in manifest["photos"]:
        mask = load_mask(out / entry["mask"])
        assert load_image(out / entry["image"]).shape[:2] == mask.shape
        assert truth_areas(mask) == entry["areas_px"]
    assert len(Dataset.open(out).records) == 6
    assert run_cli("data", "check", str(out)).returncode == 0
    again = run_cli("data", "synth", "--onto", str(source), "--n", "2", "--out", str(out))
    assert again.returncode != 0 and "already holds a dataset" in again.stderr
