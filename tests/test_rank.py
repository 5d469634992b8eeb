"""`dermaseg rank`: unlabelled photos, most uncertain first, with COCO pre-annotations (a real
subprocess and a real onnxruntime session of the rule model in `tests/rule_model.py`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg.infer.rank import entropy_table
from tests.conftest import run_cli, write_image
from tests.rule_model import write_rule_model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_entropy_table_is_the_entropy_of_the_top_probability() -> None:
    two = entropy_table(2)
    assert two[255] == 0 and two[128] == pytest.approx(1.0, abs=1e-4)
    p = 200 / 255
    assert two[200] == pytest.approx(-(p * math.log2(p) + (1 - p) * math.log2(1 - p)), abs=1e-6)
    four = entropy_table(4)
    assert four[64] == pytest.approx(1.0, abs=1e-4) and np.all(np.diff(four[64:]) <= 1e-12)


def test_rank_orders_by_mean_entropy_and_writes_coco(tmp_path: Path) -> None:
    model = write_rule_model(tmp_path / "rule.onnx")
    folder = tmp_path / "photos"
    rng = np.random.default_rng(0)

    def photo(red: int, size: tuple[int, int]) -> np.ndarray:
        rgb = np.full((*size, 3), (20, 20, 20), np.uint8)
        rgb[..., 0] = np.clip(red + rng.normal(0, 2, size), 0, 255).astype(np.uint8)
        cv2.circle(rgb, (size[1] // 2, size[0] // 2), size[0] // 4, (250, 200, 200), cv2.FILLED)
        return rgb

    write_image(folder / "sure.png", photo(5, (120, 160)))
    write_image(folder / "unsure.png", photo(120, (120, 160)))  # background red near 127.5
    write_image(folder / "big_sure.png", photo(30, (480, 640)))  # many pixels, each fairly sure
    result = run_cli("rank", str(folder), "--model", str(model), "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((tmp_path / "r" / "ranking.csv").open()))
    assert [r["photo"] for r in rows] == ["unsure.png", "big_sure.png", "sure.png"]
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    entropies = [float(r["mean_entropy"]) for r in rows]
    assert entropies == sorted(entropies, reverse=True) and 0 <= entropies[-1] < 0.2
    coco = json.loads((tmp_path / "r" / "pre_annotations.coco.json").read_text())
    assert [i["file_name"] for i in coco["images"]] == [r["photo"] for r in rows]
    assert [c["name"] for c in coco["categories"]] == ["vitiligo"]
    mask_utils = pytest.importorskip("pycocotools.mask")
    for annotation in coco["annotations"]:
        image = coco["images"][annotation["image_id"] - 1]
        pixels = mask_utils.decode(annotation["segmentation"])
        assert pixels.shape == (image["height"], image["width"])
        assert int(pixels.sum()) == annotation["area"]
    assert len(coco["annotations"]) == 3  # one patch per photo, noise specks left out
    again = run_cli("rank", str(folder), "--model", str(model), "--out", str(tmp_path / "r"))
    assert again.returncode != 0 and "already exists" in again.stderr
