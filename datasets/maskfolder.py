"""Mask-folder datasets: `images/<id>.<ext>` paired with `masks/<id>.png` by relative path."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dermaseg.datasets.config import DatasetConfig
from dermaseg.datasets.images import IMAGE_SUFFIXES, decode_mask, read_file
from dermaseg.datasets.records import Problem, Record
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError

MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")


def walk_files(folder: Path, suffixes: tuple[str, ...]) -> tuple[dict[str, Path], list[Path]]:
    """Files under `folder` with one of `suffixes`, keyed by relative path without suffix.

    Also returns the files whose key was already taken (same name, other extension). Symlinked
    folders are not followed (no loops); symlinked files are listed and fail when read.
    """
    found: dict[str, Path] = {}
    clashes: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith(".") or path.suffix.lower() not in suffixes:
                continue
            key = path.relative_to(folder).with_suffix("").as_posix()
            if key in found:
                clashes.append(path)
            else:
                found[key] = path
    return found, clashes


def value_lookup(taxonomy: Taxonomy, value_map: dict[int, str | int] | None) -> np.ndarray:
    """A 256-entry table from stored mask value to class id; -1 marks values with no class."""
    table = np.full(256, -1, dtype=np.int16)
    if value_map is None:
        table[: taxonomy.num_classes] = np.arange(taxonomy.num_classes)
        return table
    for value, target in value_map.items():
        table[value] = taxonomy.class_id(target)
    return table


def apply_lookup(values: np.ndarray, table: np.ndarray, name: str | Path) -> np.ndarray:
    """Map stored values to class ids; raises InputError listing values that have no class."""
    present = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
    unknown = [int(v) for v in present if table[v] < 0]
    if unknown:
        shown = ", ".join(map(str, unknown[:8])) + (", ..." if len(unknown) > 8 else "")
        raise InputError(name, f"unknown mask values {shown}; map them in the dataset's value_map")
    return table[values].astype(np.uint8)


class MaskFolderReader:
    """Reads `images/` + `masks/` (L or palette PNG masks whose values map onto classes)."""

    def __init__(self, config: DatasetConfig, taxonomy: Taxonomy) -> None:
        self.image_dir = config.path(config.images)
        self.mask_dir = config.path(config.masks)
        self.max_pixels = config.max_pixels
        self.table = value_lookup(taxonomy, config.value_map)

    def list_records(self) -> tuple[list[Record], list[Problem]]:
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise InputError(folder, "folder not found")
        images, image_clashes = walk_files(self.image_dir, IMAGE_SUFFIXES)
        masks, mask_clashes = walk_files(self.mask_dir, MASK_SUFFIXES)
        problems = [
            Problem(
                "error",
                "ambiguous-name",
                "another file has the same name with a different extension; it is ignored",
                str(path),
            )
            for path in image_clashes + mask_clashes
        ]
        records = []
        for key, image_path in images.items():
            mask_path = masks.get(key)
            if mask_path is None:
                problems.append(
                    Problem(
                        "error",
                        "missing-mask",
                        f"no mask {key}.png in {self.mask_dir}",
                        str(image_path),
                    )
                )
                continue
            records.append(Record(id=key, image_path=image_path, annotation_path=mask_path))
        for key, mask_path in masks.items():
            if key not in images:
                problems.append(
                    Problem("warning", "orphan-mask", "mask with no photo", str(mask_path))
                )
        return records, problems

    def read_mask(self, record: Record, height: int, width: int) -> np.ndarray:
        decoded = decode_mask(
            read_file(record.annotation_path), record.annotation_path, max_pixels=self.max_pixels
        )
        mask_h, mask_w = decoded.pixels.shape
        if (mask_h, mask_w) != (height, width):
            hint = (
                " (it matches the photo before EXIF rotation: draw masks on the upright photo)"
                if (mask_h, mask_w) == (width, height)
                else ""
            )
            raise InputError(
                record.annotation_path,
                f"mask is {mask_w}x{mask_h} but the photo is {width}x{height}{hint}",
            )
        return apply_lookup(decoded.pixels, self.table, record.annotation_path)
