"""Mask-folder reading, value maps, and duplicate-free splits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dermaseg.datasets.dataset import Dataset
from dermaseg.errors import InputError
from tests.conftest import blob_mask, make_mask_dataset, write_image


def test_reads_samples(mask_dataset: Path) -> None:
    ds = Dataset.open(mask_dataset)
    assert [r.id for r in ds.records] == [f"p{i:02d}" for i in range(6)]
    sample = ds.load(ds.records[0])
    assert sample.image.shape == (40, 48, 3) and sample.image.dtype == np.uint8
    assert np.array_equal(sample.mask, blob_mask(40, 48))
    assert sample.split in ("train", "val", "test")


def test_binary_mask_with_value_map(tmp_path: Path) -> None:
    root = make_mask_dataset(
        tmp_path, n=2, values=(255,), yaml_text="value_map: {0: background, 255: vitiligo}\n"
    )
    ds = Dataset.open(root)
    sample = ds.load(ds.records[0])
    assert set(np.unique(sample.mask)) == {0, 1}


def test_unknown_values_name_the_mask(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path, n=1, values=(1, 7))
    ds = Dataset.open(root)
    with pytest.raises(InputError, match=r"p00.png: unknown mask values 7; map them"):
        ds.load(ds.records[0])


def test_size_mismatch_and_exif_hint(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path, n=1, size=(48, 40))
    write_image(root / "masks" / "p00.png", np.zeros((48, 40), np.uint8))
    ds = Dataset.open(root)
    with pytest.raises(InputError, match=r"mask is 40x48 but the photo is 48x40 .*EXIF"):
        ds.load(ds.records[0])


def test_listing_problems(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path, n=3)
    (root / "masks" / "p01.png").unlink()
    write_image(root / "masks" / "extra.png", np.zeros((4, 4), np.uint8))
    shutil.copy(root / "images" / "p02.png", root / "images" / "p02.jpg")
    ds = Dataset.open(root)
    kinds = {(p.kind, Path(p.path).name) for p in ds.listing_problems}
    assert ("missing-mask", "p01.png") in kinds
    assert ("orphan-mask", "extra.png") in kinds
    assert any(kind == "ambiguous-name" for kind, _ in kinds)
    assert [r.id for r in ds.records] == ["p00", "p02"]


def test_seeded_split_is_deterministic_and_keeps_duplicates_together(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path, n=20)
    for i in range(3):  # byte-identical copies under new names
        shutil.copy(root / "images" / "p00.png", root / "images" / f"copy{i}.png")
        shutil.copy(root / "masks" / "p00.png", root / "masks" / f"copy{i}.png")
    (root / "images" / "sub").mkdir()
    shutil.copy(root / "images" / "p05.png", root / "images" / "sub" / "p05.png")
    (root / "masks" / "sub").mkdir()
    shutil.copy(root / "masks" / "p05.png", root / "masks" / "sub" / "p05.png")
    first = Dataset.open(root).splits
    second = Dataset.open(root).splits
    assert first.split_of == second.split_of
    assert len({first.split_of[i] for i in ("p00", "copy0", "copy1", "copy2")}) == 1
    assert first.split_of["p05"] == first.split_of["sub/p05"]
    assert sum(p.kind == "duplicate" for p in first.problems) == 2
    counts = {s: len(first.ids(s)) for s in ("train", "val", "test")}
    assert counts["train"] > counts["val"] > 0 and counts["test"] > 0


def test_split_file_duplicates_across_splits(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path, n=4)
    shutil.copy(root / "images" / "p00.png", root / "images" / "p09.png")
    shutil.copy(root / "masks" / "p00.png", root / "masks" / "p09.png")
    (root / "splits.json").write_text(
        json.dumps({"train": ["p00", "p01", "p02"], "val": ["p09", "p02", "ghost"]})
    )
    (root / "dataset.yaml").write_text("split: {file: splits.json}\n")
    problems = {p.kind: p for p in Dataset.open(root).splits.problems}
    assert "duplicate-across-splits" in problems
    assert "'p02' is in both train and val" in problems["split-overlap"].message
    assert "ghost" in problems["split-unknown-id"].message
    assert problems["unsplit"].path.endswith("p03.png")
