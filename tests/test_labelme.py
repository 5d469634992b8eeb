"""LabelMe datasets: shapes, label maps, image-path safety and listing problems."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.dataset import Dataset
from dermaseg.errors import InputError
from tests.conftest import random_photo, write_image

WIDTH, HEIGHT = 64, 48


def shape(label: str, kind: str, points: list[list[float]], **extra: object) -> dict:
    return {
        "label": label,
        "shape_type": kind,
        "points": points,
        "group_id": None,
        "flags": {},
        **extra,
    }


def write_labelme(json_path: Path, image_path: str, shapes: list[dict], **extra: object) -> Path:
    """A LabelMe JSON as LabelMe 5 writes it (imagePath relative to the JSON's folder)."""
    data = {
        "version": "5.5.0",
        "flags": {},
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,
        "imageHeight": HEIGHT,
        "imageWidth": WIDTH,
        **extra,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(data))
    return json_path


def make_labelme(root: Path, shapes: list[dict], yaml_extra: str = "") -> Path:
    """One photo `images/a.png` with its JSON beside it, and a dataset.yaml."""
    write_image(root / "images" / "a.png", random_photo(np.random.default_rng(0), HEIGHT, WIDTH))
    write_labelme(root / "images" / "a.json", "a.png", shapes)
    (root / "dataset.yaml").write_text(f"format: labelme\nimages: images\n{yaml_extra}")
    return root


def png_base64(bits: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(bits).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def test_polygon_rectangle_circle_and_mask_shapes(tmp_path: Path) -> None:
    bits = np.zeros((4, 6), bool)
    bits[1:3, 2:5] = True
    root = make_labelme(
        tmp_path,
        [
            shape("vitiligo", "polygon", [[2, 2], [30, 2], [30, 20], [2, 20]]),
            shape("Scar", "rectangle", [[50, 40], [40, 30]]),  # corners in either order
            shape("thinning", "circle", [[20.5, 35.5], [26.5, 35.5]]),
            shape("thinning", "mask", [[50, 5], [55, 8]], mask=png_base64(bits)),
        ],
    )
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    assert ds.listing_problems == []
    mask = ds.load(ds.records[0]).mask
    expected = np.zeros((HEIGHT, WIDTH), np.uint8)
    expected[2:20, 2:30] = 1
    expected[30:40, 40:50] = 2
    expected[5:9, 50:56][bits] = 3
    rows, cols = np.mgrid[:HEIGHT, :WIDTH] + 0.5
    expected[(cols - 20.5) ** 2 + (rows - 35.5) ** 2 < 36] = 3
    assert np.array_equal(mask, expected)


def test_smaller_shapes_stay_on_top_of_larger_ones(tmp_path: Path) -> None:
    root = make_labelme(
        tmp_path,
        [
            shape("scar", "rectangle", [[10, 10], [14, 14]]),
            shape("vitiligo", "polygon", [[0, 0], [40, 0], [40, 40], [0, 40]]),
        ],
    )
    ds = Dataset.open(root)
    mask = ds.load(ds.records[0]).mask
    assert mask[12, 12] == 2 and mask[30, 30] == 1


def test_label_map_and_case_insensitive_names(tmp_path: Path) -> None:
    root = make_labelme(
        tmp_path,
        [
            shape("Depigmented ", "rectangle", [[0, 0], [8, 8]]),
            shape("SCAR", "rectangle", [[20, 20], [28, 28]]),
            shape("skin", "rectangle", [[0, 0], [4, 4]]),
        ],
        yaml_extra="label_map: {depigmented: vitiligo, skin: 0}\n",
    )
    ds = Dataset.open(root)
    mask = ds.load(ds.records[0]).mask
    assert mask[6, 6] == 1 and mask[24, 24] == 2 and mask[2, 2] == 0


def test_unknown_label_is_listed_and_fails_its_photo(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, [shape("mole", "polygon", [[0, 0], [9, 0], [9, 9]])])
    ds = Dataset.open(root)
    (problem,) = ds.listing_problems
    assert problem.kind == "unknown-label" and problem.severity == "error"
    assert "'mole' has no class (1 shape(s) in 1 file(s))" in problem.message
    with pytest.raises(InputError, match=r"a.json: shape 0 \(polygon\): label 'mole' has no class"):
        ds.load(ds.records[0])


def test_separate_annotation_folder_with_dotdot_inside_root(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, [])
    (root / "images" / "a.json").unlink()
    write_labelme(
        root / "labels" / "a.json",
        "../images/a.png",
        [shape("scar", "rectangle", [[0, 0], [5, 5]])],
    )
    (root / "dataset.yaml").write_text("format: labelme\nimages: images\nannotations: labels\n")
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    assert ds.records[0].image_path == root / "images" / "a.png"
    assert ds.load(ds.records[0]).mask[2, 2] == 2


def test_unsafe_image_paths_are_skipped_unless_allowed(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "outside.png", np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    root = make_labelme(tmp_path / "ds", [])
    write_labelme(root / "images" / "abs.json", str(outside), [])
    write_labelme(root / "images" / "up.json", "../../outside.png", [])
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    unsafe = sorted(
        (Path(p.path).name, p.message) for p in ds.listing_problems if p.kind == "unsafe-path"
    )
    assert [name for name, _ in unsafe] == ["abs.json", "up.json"]
    assert "is absolute" in unsafe[0][1] and "leaves the dataset root" in unsafe[1][1]

    (root / "dataset.yaml").write_text(
        "format: labelme\nimages: images\nallow_outside_root: true\n"
    )
    allowed = Dataset.open(root)
    assert sorted(r.id for r in allowed.records) == ["a", "abs", "up"]
    assert allowed.load(allowed.records[1]).image.shape == (HEIGHT, WIDTH, 3)


def test_listing_problems_for_bad_files(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, [shape("scar", "line", [[0, 0], [5, 5]])])
    (root / "images" / "broken.json").write_text('{"shapes": [')
    (root / "images" / "other.json").write_text('{"images": []}')
    write_labelme(root / "images" / "embedded.json", "embedded.png", [], imageData="aGk=")
    write_labelme(root / "images" / "nosize.json", "a.png", [], imageWidth=0)
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    found = {(p.kind, p.severity, Path(p.path).name): p.message for p in ds.listing_problems}
    assert found[("ignored-shape", "warning", "a.json")].startswith("1 point or line")
    assert found[("unreadable-annotation", "error", "broken.json")].startswith("invalid JSON")
    assert ("not-labelme", "warning", "other.json") in found
    assert "imageData is not used" in found[("missing-image", "error", "embedded.json")]
    assert "imageWidth" in found[("invalid-annotation", "error", "nosize.json")]


def test_size_mismatch_and_bad_points_name_the_json(tmp_path: Path) -> None:
    root = make_labelme(tmp_path, [shape("scar", "polygon", [[0, 0], [5, 5]])])
    ds = Dataset.open(root)
    with pytest.raises(InputError, match=r"a.json: shape 0 \(polygon\): needs at least 3 points"):
        ds.load(ds.records[0])
    write_image(root / "images" / "a.png", np.zeros((WIDTH, HEIGHT, 3), np.uint8))
    with pytest.raises(InputError, match=r"a.json: annotation size 64x48 but photo is 48x64"):
        ds.load(ds.records[0])
