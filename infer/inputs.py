"""What a plan starts from: photo files, safely decoded (masks: `mask_inputs`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import IMAGE_SUFFIXES, decode_image, read_file
from dermaseg.infer.schema import PhotoInfo


@dataclass(frozen=True)
class Photo:
    """A decoded photo (upright RGB uint8) and what the plan records about it."""

    path: Path
    rgb: np.ndarray
    info: PhotoInfo


def collect_photos(paths: list[Path]) -> list[Path]:
    """Photo files from files and folders (a folder's photos sorted by name, not recursive).

    Missing paths are kept: reading them later reports the problem for that photo alone.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        else:
            found.append(path)
    return found


def read_photo(path: Path, *, min_long_side: int = 0) -> Photo:
    """Decode a photo with the safe loader; the plan keeps its name, sha256 and size, no EXIF.

    With `min_long_side`, a large JPEG is decoded at an exact fraction of its size that keeps
    the longer side at least that long (`info.analysis_scale` says which).
    """
    data = read_file(path)
    decoded = decode_image(data, path, min_long_side=min_long_side)
    height, width = decoded.pixels.shape[:2]
    scale = max(decoded.stored_size) // max(height, width)
    info = PhotoInfo(
        name=path.name,
        sha256=hashlib.sha256(data).hexdigest(),
        width=width * scale,
        height=height * scale,
        exif_orientation=decoded.exif_orientation,
        analysis_scale=scale,
    )
    return Photo(path, decoded.pixels, info)
