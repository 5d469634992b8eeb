"""What a plan starts from: photo files, safely decoded (masks: `mask_inputs`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import IMAGE_SUFFIXES, decode_image, read_file
from dermaseg.errors import InputError
from dermaseg.fileio import photo_sha256
from dermaseg.infer.schema import PhotoInfo


def _output_names() -> tuple[tuple[str, ...], str, frozenset[str]]:
    """The suffixes of a plan's outputs, the plan JSON's, and the stems whose outputs would
    take the name of a file of the run itself (photo `index.jpg`: its report `index.html` is
    the index page). Imported here: outputs imports analysis, which imports this module."""
    from dermaseg.infer.outputs import CORRECTED_MASK, INDEX, SUFFIXES

    suffixes = (*SUFFIXES.values(), CORRECTED_MASK)
    reserved = frozenset(
        INDEX[: -len(suffix)].casefold() for suffix in suffixes if INDEX.endswith(suffix)
    )
    return suffixes, SUFFIXES["plan"], reserved


@dataclass(frozen=True)
class Photo:
    """A decoded photo (upright RGB uint8) and what the plan records about it."""

    path: Path
    rgb: np.ndarray
    info: PhotoInfo


@dataclass(frozen=True)
class PhotoInput:
    """A photo to plan and where its outputs go, relative to the output folder (no suffix)."""

    path: Path
    stem: str  # e.g. "IMG_0001", "alice/IMG_0001" (--recursive), "IMG_0001-2" (a repeat)


def _listed(path: Path) -> bool:
    """Photos in a folder listing: a photo suffix, not hidden (macOS `._x.jpg`, temp files),
    not an output of a plan (--out can be the photos' own folder)."""
    return (
        path.suffix.lower() in IMAGE_SUFFIXES
        and not path.name.startswith(".")
        and not is_plan_output(path)
    )


def is_plan_output(path: Path) -> bool:
    """A file a plan wrote beside its plan JSON (`x.overlay.png`, `x.photo.jpg` next to
    `x.plan.json`): not a photo to plan."""
    name = path.name
    suffixes, plan_suffix, _ = _output_names()
    return any(
        name.endswith(suffix)
        and len(name) > len(suffix)
        and path.with_name(name[: -len(suffix)] + plan_suffix).is_file()
        for suffix in suffixes
    )


def _walk(folder: Path, skip: Path | None) -> list[Path]:
    """Photos under `folder`, every level, in sorted order; symlinked folders are not followed
    (no loops) and `skip` (the output folder) is left out."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        here = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (skip is None or not _same(here / d, skip))
        )
        found.extend(here / f for f in sorted(files) if _listed(here / f))
    return found


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def collect_photos(
    paths: list[Path], *, recursive: bool = False, out_dir: Path | None = None
) -> list[PhotoInput]:
    """Photo files from files and folders, each with an output stem unique within the run.

    A folder gives its photos sorted by name (with `recursive`, those of its subfolders too,
    whose outputs keep their path relative to the folder). Missing paths are kept: reading them
    later reports the problem for that photo alone.
    """
    named: list[tuple[Path, str]] = []
    for path in paths:
        if path.is_dir():
            if recursive:
                named.extend(
                    (p, p.relative_to(path).with_suffix("").as_posix())
                    for p in _walk(path, out_dir)
                )
            else:
                listed = sorted(p for p in path.iterdir() if _listed(p))
                named.extend((p, p.stem) for p in listed)
        else:
            named.append((path, path.stem or path.name))
    stems = unique_stems([stem for _, stem in named])
    return [PhotoInput(path, stem) for (path, _), stem in zip(named, stems, strict=True)]


def as_inputs(photos: list[PhotoInput] | list[Path]) -> list[PhotoInput]:
    """Photo files given one by one (no folders) as PhotoInputs with unique stems."""
    if all(isinstance(p, PhotoInput) for p in photos):
        return list(photos)
    paths = [Path(p) for p in photos]
    stems = unique_stems([p.stem or p.name for p in paths])
    return [PhotoInput(p, s) for p, s in zip(paths, stems, strict=True)]


def unique_stems(stems: list[str]) -> list[str]:
    """Each stem, or when it is already taken in this run (compared without case, as on macOS
    and Windows disks) or by a file of the run (`index`) the first free `stem-2`, `stem-3`...:
    `x-2, x, x` -> `x-2, x, x-3`."""
    taken: set[str] = set(_output_names()[2])
    unique = []
    for stem in stems:
        candidate, n = stem, 1
        while candidate.casefold() in taken:
            n += 1
            candidate = f"{stem}-{n}"
        taken.add(candidate.casefold())
        unique.append(candidate)
    return unique


def read_photo(path: Path, *, min_long_side: int = 0) -> Photo:
    """Decode a photo with the safe loader; the plan keeps its name, sha256 and size, no EXIF.

    With `min_long_side`, a large JPEG is decoded at an exact fraction of its size that keeps
    the longer side at least that long (`info.analysis_scale` says which).
    """
    data = read_file(path)
    decoded = decode_image(data, path, min_long_side=min_long_side)
    if decoded.frames > 1:
        raise InputError(
            path,
            f"{decoded.frames} pages or frames; save the one photo to plan as a single image",
        )
    height, width = decoded.pixels.shape[:2]
    scale = max(decoded.stored_size) // max(height, width)
    info = PhotoInfo(
        name=path.name,
        sha256=photo_sha256(data),
        width=width * scale,
        height=height * scale,
        exif_orientation=decoded.exif_orientation,
        analysis_scale=scale,
    )
    return Photo(path, decoded.pixels, info)
