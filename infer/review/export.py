"""Export the photos a person corrected as a mask-folder dataset that `dermaseg train` reads as
is: `images/STEM.jpg` (the photo as analysed), `masks/STEM.png` (the corrected class ids at the
same size), `dataset.yaml` with the model's classes and `splits.yaml`. Training needs at least
two corrected photos (one to train on, one to validate)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from dermaseg.errors import DermasegError
from dermaseg.fileio import write_bytes, write_text
from dermaseg.infer.formats import palette_mask_png
from dermaseg.infer.review.folder import PlanFolder

MARKER = ".dermaseg-corrections"  # marks a folder this export wrote, so it may be replaced


@dataclass(frozen=True)
class Exported:
    folder: Path
    photos: list[str]


def export_corrections(folder: PlanFolder, dest: Path, *, replace: bool = False) -> Exported:
    """Write every corrected photo of `folder` into the dataset folder `dest`.

    `dest` must not exist, be empty, or (with `replace`) be an earlier export (it is rebuilt).
    """
    stems = [s for s in folder.stems() if folder.is_corrected(s)]
    if not stems:
        raise DermasegError(
            f"{folder.root}: no corrected photos to export (save a correction first)"
        )
    _prepare(dest, replace)
    taxonomy = None
    for stem in stems:
        plan = folder.plan(stem)
        taxonomy = taxonomy or folder.taxonomy(plan)
        mask = folder.current_mask(stem, plan)
        write_bytes(dest / "images" / f"{stem}.jpg", folder.read(stem, "photo"))
        write_bytes(dest / "masks" / f"{stem}.png", palette_mask_png(mask, taxonomy))
    classes = [
        {"name": c.name, "color": list(c.color), "treatable": c.treatable} for c in taxonomy.classes
    ]
    config = {
        "format": "masks",
        "images": "images",
        "masks": "masks",
        "classes": classes,
        "split": {"file": "splits.yaml"},
    }
    write_text(dest / "splits.yaml", yaml.safe_dump(split_ids(stems), sort_keys=False))
    write_text(dest / "dataset.yaml", yaml.safe_dump(config, sort_keys=False))
    write_text(dest / MARKER, "corrections exported by dermaseg review\n")
    return Exported(dest, stems)


def split_ids(stems: list[str]) -> dict[str, list[str]]:
    """Every fifth photo (at least one) validates, the others train; none is held out for
    testing: corrections are few, and the model is tested on its own test set."""
    val = stems[::5] if len(stems) > 1 else []
    return {"train": [s for s in stems if s not in val], "val": val, "test": []}


def _prepare(dest: Path, replace: bool) -> None:
    if dest.is_symlink():
        raise DermasegError(f"{dest}: is a symlink; give a real folder")
    if dest.exists() and not dest.is_dir():
        raise DermasegError(f"{dest}: exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        if not (replace and (dest / MARKER).is_file()):
            raise DermasegError(
                f"{dest}: folder is not empty (give a new folder; nothing is overwritten)"
            )
        for sub in ("images", "masks"):
            if (dest / sub).is_dir() and not (dest / sub).is_symlink():
                shutil.rmtree(dest / sub)
    dest.mkdir(parents=True, exist_ok=True)
