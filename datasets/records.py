"""The types every dataset reader produces: records (what to load), samples (loaded), problems."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from dermaseg.errors import shown

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, tied to a file where there is one."""

    severity: Severity
    kind: str  # short machine-readable code, e.g. "missing-mask"
    message: str
    path: str = ""

    def line(self) -> str:
        return f"{shown(self.path)}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class Record:
    """One labelled photo, not yet loaded."""

    id: str  # unique within the dataset: the image path relative to the image folder, no suffix
    image_path: Path
    annotation_path: Path  # mask PNG, COCO JSON or LabelMe JSON
    annotation: Any = field(default=None, compare=False, repr=False)  # reader-specific payload

    @property
    def stem(self) -> str:
        return self.image_path.stem


@dataclass(frozen=True)
class Sample:
    """A loaded photo: RGB uint8 [H, W, 3], class-id mask uint8 [H, W], and where it came from."""

    image: np.ndarray
    mask: np.ndarray
    record: Record
    split: str = ""


class Reader(Protocol):
    """A dataset format: lists records and rasterises each record's labels to class ids."""

    def list_records(self) -> tuple[list[Record], list[Problem]]:
        """All records found, plus problems found while listing (missing files, bad paths)."""
        ...

    def read_mask(self, record: Record, height: int, width: int) -> np.ndarray:
        """The record's class-id mask for a photo of that (upright) size; raises InputError."""
        ...
