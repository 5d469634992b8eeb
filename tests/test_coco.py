"""COCO datasets: RLE and polygon rasterisation against pycocotools, listing problems, loading."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as coco_mask

from dermaseg.datasets.coco import fill_polygon, fill_rle, rle_runs
from dermaseg.datasets.dataset import Dataset
from dermaseg.errors import InputError
from tests.conftest import random_photo, write_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

CATEGORIES = [{"id": 1, "name": "Vitiligo"}, {"id": 2, "name": "scar"}]


def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """A COCO polygon (flat x, y list) for an axis-aligned box."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def encode(mask: np.ndarray) -> dict:
    """pycocotools' compressed RLE of a binary mask, as it appears in a JSON file."""
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def uncompressed(mask: np.ndarray) -> dict:
    """An uncompressed RLE (column-major run lengths, background first), as crowd labels use."""
    flat = mask.T.ravel().astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], flat, [1 - flat[-1]]))))
    runs = np.diff(np.concatenate(([0], edges)))
    return {"size": list(mask.shape), "counts": [int(r) for r in runs]}


def decode(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    out = np.zeros((height, width), np.uint8)
    fill_rle(rle_runs(rle, height, width), out, 1)
    return out


def make_coco(
    root: Path,
    images: list[dict],
    annotations: list[dict],
    categories: list[dict] = CATEGORIES,
    yaml_extra: str = "",
) -> Path:
    """Write a photo for each image entry with a size and a plain relative name, the JSON, and
    a dataset.yaml."""
    rng = np.random.default_rng(0)
    for entry in images:
        name = entry["file_name"]
        if "width" in entry and not Path(name).is_absolute() and ".." not in name:
            write_image(root / "images" / name, random_photo(rng, entry["height"], entry["width"]))
    text = json.dumps({"images": images, "annotations": annotations, "categories": categories})
    (root / "ann.json").write_text(text)
    (root / "dataset.yaml").write_text(
        f"format: coco\nannotations: ann.json\nimages: images\n{yaml_extra}"
    )
    return root


def image(image_id: int, name: str, width: int = 48, height: int = 40) -> dict:
    return {"id": image_id, "file_name": name, "width": width, "height": height}


def polygon(ann_id: int, image_id: int, category: int, points: list[float]) -> dict:
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category,
        "segmentation": [points],
        "iscrowd": 0,
    }


# ---- rasterisation against pycocotools -------------------------------------------------------


def test_compressed_rle_decodes_like_pycocotools() -> None:
    rng = np.random.default_rng(1)
    masks = [rng.random((h, w)) < p for h, w, p in [(1, 1, 0.5), (7, 13, 0.5), (40, 31, 0.05)]]
    big = np.zeros((600, 800), bool)
    big[20:590, 3:797] = True  # runs far above 2**5 and 2**10: multi-character numbers
    big[0, 0] = True
    for mask in [*masks, big, np.zeros((5, 4), bool), np.ones((5, 4), bool)]:
        rle = encode(mask)
        expected = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        assert np.array_equal(decode(rle), expected)
        assert np.array_equal(decode(rle), mask)


def test_uncompressed_rle_decodes_like_pycocotools() -> None:
    rng = np.random.default_rng(2)
    for height, width in [(9, 11), (40, 48), (3, 1)]:
        mask = rng.random((height, width)) < 0.4
        rle = uncompressed(mask)
        expected = coco_mask.decode(coco_mask.frPyObjects(rle, height, width))
        assert np.array_equal(decode(rle), expected)


def random_polygon(rng: np.random.Generator, radius: float, centre: float) -> np.ndarray:
    """A simple (star-shaped) polygon of 3..24 vertices around (centre, centre)."""
    count = int(rng.integers(3, 25))
    angles = np.sort(rng.uniform(0, 2 * np.pi, count))
    radii = radius * rng.uniform(0.6, 1.0, count)
    return np.stack([centre + radii * np.cos(angles), centre + radii * np.sin(angles)], 1)


def test_polygons_rasterise_like_pycocotools() -> None:
    """Same pixels except where a centre lies within pycocotools' 1/5-pixel quantisation of an
    edge; IoU >= 0.98 for patches of real-world size."""
    rng = np.random.default_rng(3)
    size = 160
    for trial in range(200):
        points = random_polygon(rng, rng.uniform(4, 70), rng.uniform(70, 90))
        if trial % 4 == 0:
            points = np.round(points)
        rles = coco_mask.frPyObjects([points.ravel().tolist()], size, size)
        expected = coco_mask.decode(rles)[..., 0].astype(bool)
        got = np.zeros((size, size), np.uint8)
        fill_polygon(points, got, 1)
        differ = np.argwhere(expected != (got > 0))
        contour = points.astype(np.float32).reshape(-1, 1, 2)
        for row, col in differ:
            centre = (float(col) + 0.5, float(row) + 0.5)
            assert abs(cv2.pointPolygonTest(contour, centre, True)) < 0.25, (trial, row, col)
        if expected.sum() >= 1000:
            assert len(differ) / (expected | (got > 0)).sum() <= 0.02, trial


def test_box_polygon_covers_exactly_its_pixels() -> None:
    got = np.zeros((20, 20), np.uint8)
    fill_polygon(np.array(box(2, 3, 12, 8)).reshape(-1, 2), got, 1)
    expected = np.zeros((20, 20), np.uint8)
    expected[3:8, 2:12] = 1
    assert np.array_equal(got, expected)


# ---- loading through the public path ---------------------------------------------------------


def test_open_and_load_polygons_rle_and_negatives(tmp_path: Path) -> None:
    scar = np.zeros((40, 48), bool)
    scar[12:16, 20:26] = True
    root = make_coco(
        tmp_path,
        [image(1, "a.png"), image(2, "sub/b.jpg"), image(3, "negative.png")],
        [
            # the small scar comes first but survives: larger regions are painted first
            {"id": 10, "image_id": 1, "category_id": 2, "segmentation": encode(scar), "iscrowd": 0},
            polygon(11, 1, 1, box(10, 5, 40, 30)),
            {
                "id": 12,
                "image_id": 2,
                "category_id": 2,
                "segmentation": uncompressed(scar),
                "iscrowd": 1,
            },
        ],
    )
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a", "sub/b", "negative"]
    assert ds.listing_problems == []
    a, b, negative = (ds.load(r).mask for r in ds.records)
    expected = np.zeros((40, 48), np.uint8)
    expected[5:30, 10:40] = 1
    expected[scar] = 2
    assert np.array_equal(a, expected)
    assert np.array_equal(b, scar.astype(np.uint8) * 2)
    assert not negative.any()


def test_folder_without_yaml_is_detected_as_coco(tmp_path: Path) -> None:
    root = make_coco(tmp_path, [image(1, "a.png")], [polygon(1, 1, 1, box(0, 0, 4, 4))])
    (root / "dataset.yaml").unlink()
    ds = Dataset.open(root)
    assert ds.config.format == "coco"
    assert ds.load(ds.records[0]).mask[:4, :4].min() == 1


def test_label_map_by_name_and_by_id(tmp_path: Path) -> None:
    categories = [{"id": 1, "name": "depigmented"}, {"id": 2, "name": "cicatrix"}]
    root = make_coco(
        tmp_path,
        [image(1, "a.png")],
        [polygon(1, 1, 1, box(0, 0, 10, 10)), polygon(2, 1, 2, box(20, 20, 30, 30))],
        categories,
        yaml_extra="label_map: {Depigmented: vitiligo, cicatrix: 2}\n",
    )
    ds = Dataset.open(root)
    mask = ds.load(ds.records[0]).mask
    assert mask[5, 5] == 1 and mask[25, 25] == 2 and mask[15, 15] == 0


def test_bad_label_map_target_is_one_line(tmp_path: Path) -> None:
    root = make_coco(tmp_path, [image(1, "a.png")], [], yaml_extra="label_map: {x: nevus}\n")
    with pytest.raises(InputError, match=r"label_map\['x'\]: unknown class 'nevus'"):
        Dataset.open(root)


def test_unknown_category_is_listed_once_and_fails_its_photos(tmp_path: Path) -> None:
    categories = [*CATEGORIES, {"id": 3, "name": "mole"}]
    root = make_coco(
        tmp_path,
        [image(1, "a.png"), image(2, "b.png")],
        [
            polygon(1, 1, 3, box(0, 0, 5, 5)),
            polygon(2, 1, 3, box(9, 9, 12, 12)),
            polygon(3, 2, 1, box(0, 0, 5, 5)),
            polygon(4, 2, 7, box(0, 0, 5, 5)),
        ],
        categories,
    )
    ds = Dataset.open(root)
    messages = [p.message for p in ds.listing_problems if p.kind == "unknown-category"]
    assert len(messages) == 2
    assert any("'mole' has no class (2 annotation(s))" in m for m in messages)
    assert any("category id 7 is not in categories" in m for m in messages)
    with pytest.raises(InputError, match=r"ann.json: image 1: annotation 1: label 'mole' has no"):
        ds.load(ds.records[0])


def test_unsafe_paths_are_skipped_unless_allowed(tmp_path: Path) -> None:
    outside = write_image(tmp_path / "outside.png", np.zeros((40, 48, 3), np.uint8))
    root = tmp_path / "ds"
    entries = [image(1, "a.png"), image(2, str(outside)), image(3, "../../outside.png")]
    make_coco(root, entries, [])
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    unsafe = [p for p in ds.listing_problems if p.kind == "unsafe-path"]
    assert len(unsafe) == 2 and all(p.severity == "error" for p in unsafe)
    assert "is absolute" in unsafe[0].message and "leaves the dataset root" in unsafe[1].message
    assert "allow_outside_root" in unsafe[0].message

    (root / "dataset.yaml").write_text(
        "format: coco\nannotations: ann.json\nimages: images\nallow_outside_root: true\n"
    )
    allowed = Dataset.open(root)
    assert {r.image_path for r in allowed.records} >= {outside}
    assert not [p for p in allowed.listing_problems if p.kind == "unsafe-path"]


def test_missing_image_orphans_and_invalid_entries(tmp_path: Path) -> None:
    root = make_coco(
        tmp_path,
        [image(1, "a.png"), image(2, "gone.png"), {"id": 3, "file_name": "c.png"}],
        [polygon(1, 1, 1, box(0, 0, 4, 4)), polygon(2, 99, 1, box(0, 0, 4, 4)), "junk"],
    )
    (root / "images" / "gone.png").unlink()
    ds = Dataset.open(root)
    assert [r.id for r in ds.records] == ["a"]
    by_kind = {p.kind: p for p in ds.listing_problems}
    assert by_kind["missing-image"].severity == "error"
    assert "gone.png" in by_kind["missing-image"].message
    assert by_kind["orphan-annotation"].severity == "warning"
    assert "image id 99" in by_kind["orphan-annotation"].message
    assert sum(p.kind == "invalid-entry" for p in ds.listing_problems) == 2


def test_size_mismatch_names_json_and_image(tmp_path: Path) -> None:
    root = make_coco(tmp_path, [image(7, "a.png", width=48, height=40)], [])
    write_image(root / "images" / "a.png", np.zeros((48, 40, 3), np.uint8))
    ds = Dataset.open(root)
    with pytest.raises(
        InputError,
        match=r"ann.json: image 7: annotation size 48x40 but photo "
        r"is 40x48 \(it matches the photo before EXIF",
    ):
        ds.load(ds.records[0])


def test_bad_geometry_names_the_annotation(tmp_path: Path) -> None:
    bad_rle = {"size": [40, 48], "counts": [5, 10]}
    root = make_coco(
        tmp_path,
        [image(1, "a.png"), image(2, "b.png")],
        [
            {"id": 5, "image_id": 1, "category_id": 1, "segmentation": bad_rle},
            polygon(6, 2, 1, [1, 2, 3, 4]),
        ],
    )
    ds = Dataset.open(root)
    with pytest.raises(InputError, match=r"image 1: annotation 5: RLE runs cover 15 pixels"):
        ds.load(ds.records[0])
    with pytest.raises(InputError, match=r"image 2: annotation 6: needs at least 3 points"):
        ds.load(ds.records[1])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"images": [', r"ann.json: invalid JSON at line 1 column 13"),
        ("[1, 2]", r"ann.json: expected a COCO object .* got a JSON array"),
        ('{"annotations": []}', r'ann.json: no "images" list'),
        ('{"images": {}}', r'ann.json: "images" must be an array, got a JSON object'),
        ('{"images": [], "categories": [{"id": 1}]}', r"categories\[0\] needs an id and a name"),
    ],
)
def test_malformed_json_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    root = make_coco(tmp_path, [], [])
    (root / "ann.json").write_text(text)
    with pytest.raises(InputError, match=message) as caught:
        Dataset.open(root)
    assert "\n" not in str(caught.value)
