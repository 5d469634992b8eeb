"""Train/val/test splits that never put the same photo (same stem or same bytes) in two splits."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from dermaseg.datasets.config import SplitConfig
from dermaseg.datasets.records import Problem, Record
from dermaseg.errors import InputError
from dermaseg.fileio import read_user_file

SPLIT_NAMES = ("train", "val", "test")


@dataclass(frozen=True)
class SplitAssignment:
    """Which split each record id belongs to; ids missing from the mapping are left out."""

    split_of: dict[str, str]
    problems: list[Problem]

    def ids(self, split: str) -> list[str]:
        return [i for i, s in self.split_of.items() if s == split]


def duplicate_groups(records: list[Record], digests: dict[str, str]) -> list[list[Record]]:
    """Groups of records that are the same photo: same file stem or same content hash."""
    parent = {r.id: r.id for r in records}

    def find(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    first_by: dict[tuple[str, str], str] = {}
    for record in records:
        for kind, value in (("stem", record.stem), ("sha256", digests.get(record.id, ""))):
            if not value:
                continue
            other = first_by.setdefault((kind, value), record.id)
            parent[find(record.id)] = find(other)
    groups: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        groups[find(record.id)].append(record)
    return list(groups.values())


def _describe(group: list[Record], digests: dict[str, str]) -> str:
    same_bytes = len({digests.get(r.id) for r in group}) == 1
    return "same content" if same_bytes else "same file name"


def read_split_file(path: Path) -> dict[str, list[str]]:
    try:
        text = read_user_file(path, max_bytes=256 << 20).decode("utf-8")
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except RecursionError:
        raise InputError(path, "invalid split file (nested too deeply)") from None
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(path, f"invalid split file ({str(exc).splitlines()[0]})") from None
    if (
        not isinstance(data, dict)
        or not set(data) <= set(SPLIT_NAMES)
        or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in data.values()
        )
    ):
        raise InputError(path, "split file must map train/val/test to lists of photo ids")
    return data


def assign_splits(
    records: list[Record], config: SplitConfig, root: Path, digests: dict[str, str]
) -> SplitAssignment:
    """Assign splits from the split file, or by seeded fractions over duplicate groups."""
    groups = duplicate_groups(records, digests)
    problems = [
        Problem(
            "warning",
            "duplicate",
            f"{_describe(g, digests)} as {', '.join(r.id for r in g[1:])}; kept in one split",
            str(g[0].image_path),
        )
        for g in groups
        if len(g) > 1
    ]
    if config.file is None:
        return SplitAssignment(_seeded(groups, config), problems)
    listed = read_split_file(root / config.file)
    split_of: dict[str, str] = {}
    known = {r.id for r in records}
    for split, ids in listed.items():
        for photo_id in ids:
            if photo_id not in known:
                problems.append(
                    Problem(
                        "warning",
                        "split-unknown-id",
                        f"{split} lists {photo_id!r}, which is not in the dataset",
                        str(root / config.file),
                    )
                )
            elif photo_id in split_of and split_of[photo_id] != split:
                problems.append(
                    Problem(
                        "error",
                        "split-overlap",
                        f"{photo_id!r} is in both {split_of[photo_id]} and {split}",
                        str(root / config.file),
                    )
                )
            else:
                split_of[photo_id] = split
    for group in groups:
        splits = sorted({split_of[r.id] for r in group if r.id in split_of})
        if len(splits) > 1:
            problems.append(
                Problem(
                    "error",
                    "duplicate-across-splits",
                    f"{_describe(group, digests)} as "
                    f"{', '.join(r.id for r in group[1:])} in splits {splits}",
                    str(group[0].image_path),
                )
            )
    for record in records:
        if record.id not in split_of:
            problems.append(
                Problem(
                    "warning", "unsplit", "not in the split file; left out", str(record.image_path)
                )
            )
    return SplitAssignment(split_of, problems)


def _seeded(groups: list[list[Record]], config: SplitConfig) -> dict[str, str]:
    """Shuffle whole duplicate groups with the seed, then cut val and test off the front."""
    ordered = sorted(groups, key=lambda g: g[0].id)
    order = np.random.default_rng(config.seed).permutation(len(ordered))
    n_val = round(len(ordered) * config.val)
    n_test = round(len(ordered) * config.test)
    split_of: dict[str, str] = {}
    for rank, index in enumerate(order):
        split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
        for record in ordered[index]:
            split_of[record.id] = split
    return split_of


def kfold_splits(
    records: list[Record], digests: dict[str, str], folds: int, fold: int, seed: int, test: float
) -> SplitAssignment:
    """Fold `fold` of `folds`: a seeded test share first, the rest dealt into folds (one is val).

    Duplicate groups stay whole, and the test photos are the same for every fold.
    """
    groups = sorted(duplicate_groups(records, digests), key=lambda g: g[0].id)
    order = np.random.default_rng(seed).permutation(len(groups))
    n_test = round(len(groups) * test)
    split_of: dict[str, str] = {}
    for rank, index in enumerate(order):
        in_fold = (rank - n_test) % folds == fold
        split = "test" if rank < n_test else "val" if in_fold else "train"
        for record in groups[index]:
            split_of[record.id] = split
    return SplitAssignment(split_of, [])
