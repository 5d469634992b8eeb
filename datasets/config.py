"""Dataset configs: where the photos and labels are and how label values map onto classes."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dermaseg.datasets.images import DEFAULT_MAX_PIXELS
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import InputError
from dermaseg.fileio import read_head
from dermaseg.validation import validation_message
from dermaseg.yamlio import read_mapping

CONFIG_NAMES = ("dataset.yaml", "dataset.yml")


class ClassEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    color: tuple[int, int, int]
    treatable: bool = False
    description: str = ""


class SplitConfig(BaseModel):
    """A split file (JSON/YAML mapping train/val/test to photo ids) or seeded fractions."""

    model_config = ConfigDict(extra="forbid")

    file: str | None = None
    seed: int = 0
    val: float = Field(default=0.15, ge=0, lt=1)
    test: float = Field(default=0.15, ge=0, lt=1)

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitConfig:
        if self.val + self.test >= 1:
            raise ValueError(f"val + test = {self.val + self.test} leaves nothing to train on")
        return self


class DatasetConfig(BaseModel):
    """A dataset on disk. Relative paths are relative to `root` (by default the config's folder)."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["masks", "coco", "labelme"] = "masks"
    root: Path = Path(".")
    images: str = "images"
    masks: str = "masks"
    annotations: str | None = None  # COCO: the JSON file; LabelMe: folder of JSONs (default images)
    classes: list[ClassEntry] | None = None  # None: the default taxonomy
    value_map: dict[int, str | int] | None = None  # masks: stored value -> class name or id
    label_map: dict[str, str | int] | None = None  # COCO/LabelMe: label -> class name or id
    split: SplitConfig = SplitConfig()
    allow_outside_root: bool = False  # let COCO/LabelMe image paths leave the dataset root
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, gt=0)

    @model_validator(mode="after")
    def _maps_name_known_classes(self) -> DatasetConfig:
        taxonomy = self.taxonomy()
        for name, mapping in (("value_map", self.value_map), ("label_map", self.label_map)):
            for key, target in (mapping or {}).items():
                try:
                    taxonomy.class_id(target)
                except KeyError as exc:
                    raise ValueError(f"{name}[{key!r}]: {exc.args[0]}") from None
        for key in self.value_map or {}:
            if not 0 <= key <= 255:
                raise ValueError(f"value_map: {key} is not a mask value (0..255)")
        return self

    def taxonomy(self) -> Taxonomy:
        if self.classes is None:
            return DEFAULT_TAXONOMY
        return Taxonomy.from_names([c.model_dump() for c in self.classes])

    def path(self, relative: str) -> Path:
        return (self.root / relative).resolve()


def _auto_config(folder: Path) -> dict:
    """Guess the format of a folder that has no dataset.yaml."""
    if (folder / "images").is_dir() and (folder / "masks").is_dir():
        return {"format": "masks"}
    coco = sorted(p.name for p in folder.glob("*.json") if _looks_like_coco(p))
    if len(coco) == 1:
        return {
            "format": "coco",
            "annotations": coco[0],
            "images": "images" if (folder / "images").is_dir() else ".",
        }
    if any(folder.glob("*.json")) or any(folder.glob("*/*.json")):
        return {"format": "labelme", "images": "."}
    raise InputError(
        folder,
        "not a dataset: expected dataset.yaml, images/ + masks/, a COCO JSON or LabelMe JSONs",
    )


def _looks_like_coco(path: Path) -> bool:
    head = read_head(path, 4096)
    return b'"images"' in head and (b'"annotations"' in head or b'"categories"' in head)


def load_dataset_config(spec: str | Path) -> DatasetConfig:
    """Resolve a dataset spec: a dataset YAML, or a folder (with or without dataset.yaml)."""
    spec = Path(spec)
    if not spec.exists():
        raise InputError(spec, "dataset not found")
    if spec.is_dir():
        found = [spec / name for name in CONFIG_NAMES if (spec / name).is_file()]
        settings = read_mapping(found[0]) if found else _auto_config(spec)
        base, source = spec, (found[0] if found else spec)
    else:
        settings, base, source = read_mapping(spec), spec.parent, spec
    try:
        config = DatasetConfig(**settings)
    except ValidationError as exc:
        raise InputError(source, validation_message(exc, DatasetConfig)) from None
    except ValueError as exc:
        raise InputError(source, str(exc)) from None
    return config.model_copy(update={"root": (base / config.root).resolve()})
