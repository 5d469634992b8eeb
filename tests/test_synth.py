"""The synthetic photo generator: determinism, exact ground truth, the marker, safe writing."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.images import decode_image, encode_jpeg, load_image, load_mask
from dermaseg.datasets.synth import generate_dataset, generate_photo, photo_seed
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import OutputExistsError

NAMES = DEFAULT_TAXONOMY.names
SIZE = (160, 128)


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "ds"
    return root, generate_dataset(root, n=6, size=SIZE, seed=11)


def test_writes_the_mask_folder_layout(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    assert (root / "dataset.yaml").read_text() == (
        "format: masks\nimages: images\nmasks: masks\nsplit: {seed: 11, val: 0.15, test: 0.15}\n"
    )
    assert json.loads((root / "manifest.json").read_text()) == manifest
    assert manifest["generator"] == "dermaseg.synth" and manifest["taxonomy"] == NAMES
    assert [e["id"] for e in manifest["photos"]] == [f"synth_{i:05d}" for i in range(6)]
    for entry in manifest["photos"]:
        image = Image.open(root / entry["image"])
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", SIZE)
        assert len(image.getexif()) == 0
        assert Image.open(root / entry["mask"]).mode == "P"


def generated_files(root: Path, n: int, seed: int) -> dict[str, bytes]:
    generate_dataset(root, n, 96, seed=seed)
    return files(root)


def test_same_seed_same_bytes_and_photo_i_does_not_depend_on_n(tmp_path: Path) -> None:
    first = generated_files(tmp_path / "a", 4, seed=5)
    assert generated_files(tmp_path / "b", 4, seed=5) == first
    short = generated_files(tmp_path / "short", 2, seed=5)
    for name in ("images/synth_00000.jpg", "images/synth_00001.jpg", "masks/synth_00001.png"):
        assert short[name] == first[name]
    other = generated_files(tmp_path / "c", 4, seed=6)
    assert other["images/synth_00000.jpg"] != first["images/synth_00000.jpg"]


def test_areas_match_the_mask_file(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    for entry in manifest["photos"]:
        mask = load_mask(root / entry["mask"])
        counts = np.bincount(mask.ravel(), minlength=len(NAMES))
        assert entry["class_area_px"] == {n: int(counts[i]) for i, n in enumerate(NAMES)}
        for name in NAMES[1:]:
            in_patches = sum(p["area_px"] for p in entry["patches"] if p["class"] == name)
            assert in_patches == entry["class_area_px"][name]


def test_mm2_areas_follow_the_scale(dataset: tuple[Path, dict]) -> None:
    _, manifest = dataset
    for entry in manifest["photos"]:
        scale = entry["mm_per_pixel"]
        if scale is None:
            assert entry["class_area_mm2"] is None and entry["marker"] is None
            assert all(p["area_mm2"] is None for p in entry["patches"])
            continue
        for name, px in entry["class_area_px"].items():
            assert entry["class_area_mm2"][name] == pytest.approx(px * scale**2, rel=1e-12)
        for patch in entry["patches"]:
            assert patch["area_mm2"] == pytest.approx(patch["area_px"] * scale**2, rel=1e-12)
        assert scale == pytest.approx(entry["marker"]["side_mm"] / _side_px(entry), rel=1e-3)


def _side_px(entry: dict) -> float:
    corners = np.array(entry["marker"]["corners_px"])
    return float(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).mean())


def test_all_classes_kinds_and_markers_occur(dataset: tuple[Path, dict]) -> None:
    _, manifest = dataset
    photos = manifest["photos"]
    present = {n for e in photos for n, px in e["class_area_px"].items() if px and n != NAMES[0]}
    assert present == set(NAMES[1:])
    assert {e["kind"] for e in photos} == {"skin", "scalp"}
    assert sum(e["marker"] is not None for e in photos) == 3
    for entry in photos:
        assert (entry["hair_lab"] is None) == (entry["kind"] == "skin")


def _detect(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    detector = cv2.aruco.ArucoDetector(dictionary, cv2.aruco.DetectorParameters())
    corners, ids, _ = detector.detectMarkers(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    return corners, ids


def _assert_marker_found(rgb: np.ndarray, marker: dict) -> None:
    """The marker's id is detected at the recorded corners (dense hair may add false ids)."""
    corners, ids = _detect(rgb)
    assert ids is not None and marker["id"] in ids.ravel().tolist()
    found = corners[ids.ravel().tolist().index(marker["id"])].reshape(4, 2)
    assert np.abs(found - np.array(marker["corners_px"])).max() < 2.0


def test_marker_is_detected_at_its_recorded_corners(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    for entry in manifest["photos"]:
        if entry["marker"] is not None:
            _assert_marker_found(load_image(root / entry["image"]), entry["marker"])


@pytest.mark.parametrize("size", [96, (200, 120)])
def test_marker_survives_jpeg_at_small_sizes(size: int | tuple[int, int]) -> None:
    for index in range(6):
        photo = generate_photo(photo_seed(0, index), size, with_marker=True)
        jpeg = encode_jpeg(photo.rgb, photo.entry["jpeg_quality"])
        _assert_marker_found(decode_image(jpeg, "synth.jpg").pixels, photo.entry["marker"])


def test_recorded_colours_describe_the_pixels(dataset: tuple[Path, dict]) -> None:
    root, manifest = dataset
    for entry in manifest["photos"]:
        rgb = load_image(root / entry["image"]).astype(np.float32) / 255
        lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)
        mask = load_mask(root / entry["mask"])
        if entry["kind"] == "skin" and entry["marker"] is None:
            jpeg_skin = lab[mask == 0].mean(axis=0)
            assert np.abs(jpeg_skin - entry["skin_lab"]).max() < 1.5
        for patch in entry["patches"]:
            x, y, w, h = patch["bbox"]
            assert min(x, y) >= 0 and x + w <= entry["width"] and y + h <= entry["height"]
            if patch["class"] == "vitiligo" and patch["surround_lab"] is not None:
                assert patch["lab"][0] > patch["surround_lab"][0]


def test_generate_photo_kind_and_mask() -> None:
    photo = generate_photo(3, (128, 96), with_marker=False, kind="scalp")
    assert photo.rgb.shape == (96, 128, 3) and photo.rgb.dtype == np.uint8
    assert photo.mask.shape == (96, 128) and set(np.unique(photo.mask)) <= {0, 3}
    assert photo.entry["kind"] == "scalp" and photo.entry["hair_hex"].startswith("#")
    with pytest.raises(ValueError, match="too small"):
        generate_photo(3, 32, with_marker=False)


def test_refuses_to_overwrite_and_reports_progress(tmp_path: Path) -> None:
    ticks: list[int] = []
    generate_dataset(tmp_path, 2, 96, progress=ticks.append)
    assert ticks == [1, 1]
    before = files(tmp_path)
    with pytest.raises(OutputExistsError):
        generate_dataset(tmp_path, 2, 96, seed=1)
    assert files(tmp_path) == before
