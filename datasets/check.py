"""`data check`: read every photo and label of a dataset and report what is wrong with them."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.images import decode_image, read_file
from dermaseg.datasets.records import Problem, Record
from dermaseg.errors import InputError
from dermaseg.fileio import photo_sha256

MIN_SIDE = 32  # photos smaller than this on a side cannot be segmented usefully


@dataclass
class FileCheck:
    """What reading one record found."""

    record: Record
    sha256: str = ""
    size: tuple[int, int] | None = None  # (width, height), upright
    class_pixels: np.ndarray | None = None  # pixel count per class id
    problems: list[Problem] = field(default_factory=list)


@dataclass
class CheckReport:
    """Everything `data check` found, ready for a table or JSON."""

    dataset: str
    format: str
    classes: list[str]
    files: list[FileCheck]
    problems: list[Problem]
    split_counts: dict[str, int]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def class_stats(self) -> list[dict]:
        """Per class: total pixels, fraction of labelled pixels, number of photos containing it."""
        counted = [f.class_pixels for f in self.files if f.class_pixels is not None]
        totals = np.sum(counted, axis=0) if counted else np.zeros(len(self.classes), np.int64)
        present = np.sum([c > 0 for c in counted], axis=0) if counted else totals * 0
        grand = max(int(totals.sum()), 1)
        return [
            {
                "class": name,
                "pixels": int(totals[i]),
                "fraction": float(totals[i]) / grand,
                "photos": int(present[i]),
            }
            for i, name in enumerate(self.classes)
        ]

    def size_stats(self) -> dict:
        """Image size distribution: min / median / max per side and the most common sizes."""
        sizes = [f.size for f in self.files if f.size is not None]
        if not sizes:
            return {"count": 0}
        widths, heights = np.array(sizes).T
        common = Counter(f"{w}x{h}" for w, h in sizes).most_common(5)
        return {
            "count": len(sizes),
            "width": {
                "min": int(widths.min()),
                "median": float(np.median(widths)),
                "max": int(widths.max()),
            },
            "height": {
                "min": int(heights.min()),
                "median": float(np.median(heights)),
                "max": int(heights.max()),
            },
            "most_common": [{"size": s, "photos": n} for s, n in common],
        }

    def to_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "format": self.format,
            "photos": len(self.files),
            "readable": sum(1 for f in self.files if f.class_pixels is not None),
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "splits": self.split_counts,
            "classes": self.class_stats(),
            "sizes": self.size_stats(),
            "problems": [
                {"severity": p.severity, "kind": p.kind, "path": p.path, "message": p.message}
                for p in self.problems
            ],
        }


def _problem(kind: str, exc: InputError) -> Problem:
    return Problem("error", kind, exc.problem, str(exc.path))


def check_record(dataset: Dataset, record: Record) -> FileCheck:
    """Read one record fully; every failure becomes a problem, never an exception."""
    result = FileCheck(record)
    try:
        data = read_file(record.image_path)
        result.sha256 = photo_sha256(data)
        decoded = decode_image(data, record.image_path, max_pixels=dataset.config.max_pixels)
    except InputError as exc:
        result.problems.append(_problem("unreadable-image", exc))
        return result
    height, width = decoded.pixels.shape[:2]
    result.size = (width, height)
    where = str(record.image_path)
    if min(width, height) < MIN_SIDE:
        result.problems.append(
            Problem(
                "error",
                "tiny-image",
                f"{width}x{height} is too small (at least {MIN_SIDE} px a side)",
                where,
            )
        )
    if decoded.frames > 1:
        result.problems.append(
            Problem(
                "warning",
                "multi-frame",
                f"{decoded.frames} pages or frames; only the first is used",
                where,
            )
        )
    try:
        mask = dataset.reader.read_mask(record, height, width)
    except InputError as exc:
        result.problems.append(_problem("bad-mask", exc))
        return result
    result.class_pixels = np.bincount(mask.ravel(), minlength=dataset.taxonomy.num_classes)
    if result.class_pixels[1:].sum() == 0:
        result.problems.append(
            Problem("warning", "empty-mask", "only background is labelled", where)
        )
    return result


def check_dataset(
    dataset: Dataset, progress: Callable[[int], None] | None = None, workers: int | None = None
) -> CheckReport:
    """Read every record (in parallel threads), then check splits and duplicates."""
    workers = workers or min(4, os.cpu_count() or 1)

    def run(record: Record) -> FileCheck:
        result = check_record(dataset, record)
        if progress is not None:
            progress(1)
        return result

    with ThreadPoolExecutor(max_workers=workers) as pool:
        files = list(pool.map(run, dataset.records))
    digests = {f.record.id: f.sha256 for f in files if f.sha256}
    splits = dataset.assign_splits(digests)
    problems = list(dataset.listing_problems)
    for f in files:
        problems.extend(f.problems)
    problems.extend(splits.problems)
    split_counts = dict(Counter(splits.split_of.values()))
    return CheckReport(
        dataset=str(dataset.config.root),
        format=dataset.config.format,
        classes=dataset.taxonomy.names,
        files=files,
        problems=problems,
        split_counts={s: split_counts.get(s, 0) for s in ("train", "val", "test")},
    )
