"""The label taxonomy: class ids, their names and colours, and which are treatable."""

from __future__ import annotations

import json
from functools import cached_property

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RGB = tuple[int, int, int]


class LabelClass(BaseModel):
    """One segmentation class."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int = Field(ge=0, le=254)
    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_\-]*$")
    color: RGB
    treatable: bool = False
    description: str = ""

    @field_validator("color")
    @classmethod
    def _color_in_range(cls, color: RGB) -> RGB:
        if any(not 0 <= c <= 255 for c in color):
            raise ValueError(f"colour components must be 0..255, got {list(color)}")
        return color


class Taxonomy(BaseModel):
    """An ordered class list; class ids are 0..C-1 and class 0 is the background."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    classes: tuple[LabelClass, ...]

    @model_validator(mode="after")
    def _ids_contiguous_names_unique(self) -> Taxonomy:
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise ValueError(f"class ids must be 0..{len(ids) - 1} in order, got {ids}")
        if len(ids) < 2:
            raise ValueError("a taxonomy needs the background class and at least one other")
        names = [c.name for c in self.classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate class names: {duplicates}")
        if self.classes[0].treatable:
            raise ValueError("class 0 is the background and cannot be treatable")
        return self

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @cached_property
    def palette(self) -> np.ndarray:
        """RGB colour per class id, uint8 [C, 3]."""
        return np.array([c.color for c in self.classes], dtype=np.uint8)

    def class_id(self, key: str | int) -> int:
        """Resolve a class name or id to its id; raises KeyError naming the valid choices."""
        if isinstance(key, int) and not isinstance(key, bool):
            if 0 <= key < self.num_classes:
                return key
        elif isinstance(key, str):
            for c in self.classes:
                if c.name == key:
                    return c.id
        raise KeyError(f"unknown class {key!r}; classes are {self.names}")

    def to_json(self) -> str:
        """Compact JSON list of classes, as stored in checkpoints and ONNX metadata."""
        return json.dumps([c.model_dump() for c in self.classes], separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Taxonomy:
        """Inverse of `to_json`; ValueError (never RecursionError) for anything else."""
        try:
            entries = json.loads(text)
        except RecursionError:
            raise ValueError("class list nested too deeply") from None
        if not isinstance(entries, list) or not all(isinstance(c, dict) for c in entries):
            raise ValueError("the class list is not a JSON list of objects")
        return cls(classes=tuple(LabelClass(**c) for c in entries))

    @classmethod
    def from_names(cls, entries: list[dict]) -> Taxonomy:
        """Build from a config list of {name, color, treatable, ...}, numbering classes in order."""
        return cls(classes=tuple(LabelClass(id=i, **e) for i, e in enumerate(entries)))


DEFAULT_TAXONOMY = Taxonomy(
    classes=(
        LabelClass(
            id=0,
            name="background",
            color=(0, 0, 0),
            treatable=False,
            description="skin, hair and anything not to treat",
        ),
        LabelClass(
            id=1,
            name="vitiligo",
            color=(255, 196, 0),
            treatable=True,
            description="depigmented patch",
        ),
        LabelClass(
            id=2,
            name="scar",
            color=(220, 40, 60),
            treatable=True,
            description="hypo- or hyperpigmented scar tissue",
        ),
        LabelClass(
            id=3,
            name="thinning",
            color=(40, 120, 255),
            treatable=True,
            description="scalp region of reduced hair density",
        ),
    )
)
