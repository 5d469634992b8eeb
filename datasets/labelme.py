"""LabelMe datasets: one JSON per photo, found anywhere under the annotations folder.

Geometry, painting order (largest region first), label mapping and image-path safety follow the
rules in `dermaseg.datasets.coco`. Shapes with area are painted: polygon, rectangle, circle and
mask (a PNG bitmap of a box); points and lines have no area and are skipped with a warning.

A record's id is its JSON's path relative to the annotations folder, without suffix, which is the
photo's id in the usual layout of each photo's JSON beside it. The photo is read from
`imagePath`; an embedded `imageData` copy is not used, so a JSON whose photo file is missing is
an error: keep photos as files, where they can be checked, hashed and split like any other.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np

from dermaseg.datasets.coco import (
    Drawing,
    Labelled,
    Region,
    UnsafePath,
    as_points,
    class_of,
    is_size,
    json_type,
    label_classes,
    locate_image,
    normal_path,
    polygons_drawing,
    rasterise,
    read_json,
    unknown_label_hint,
    unsafe_path_problem,
)
from dermaseg.datasets.config import DatasetConfig
from dermaseg.datasets.images import decode_mask
from dermaseg.datasets.maskfolder import walk_files
from dermaseg.datasets.records import Problem, Record
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError

LINE_TYPES = frozenset({"point", "points", "line", "linestrip"})


def fill_disk(cx: float, cy: float, radius: float, mask: np.ndarray, value: int) -> None:
    """Set the pixels whose centre is within `radius` of (cx, cy) to `value`."""
    height, width = mask.shape
    top, bottom = max(0, math.floor(cy - radius)), min(height, math.ceil(cy + radius) + 1)
    left, right = max(0, math.floor(cx - radius)), min(width, math.ceil(cx + radius) + 1)
    if top >= bottom or left >= right:
        return
    rows = np.arange(top, bottom)[:, None] + 0.5
    cols = np.arange(left, right)[None, :] + 0.5
    inside = (cols - cx) ** 2 + (rows - cy) ** 2 < radius**2
    mask[top:bottom, left:right][inside] = value


def fill_bitmap(x: int, y: int, bits: np.ndarray, mask: np.ndarray, value: int) -> None:
    """Set the true pixels of `bits`, placed with its top-left at column x, row y, to `value`."""
    height, width = mask.shape
    top, left = max(0, y), max(0, x)
    bottom, right = min(height, y + bits.shape[0]), min(width, x + bits.shape[1])
    if top < bottom and left < right:
        window = bits[top - y : bottom - y, left - x : right - x]
        mask[top:bottom, left:right][window] = value


def rectangle_drawing(points: np.ndarray) -> Drawing:
    """The box spanned by the points (two opposite corners)."""
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    return polygons_drawing([np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])])


def circle_drawing(points: np.ndarray) -> Drawing:
    """A disk from its centre (first point) and a point on its edge (second)."""
    (cx, cy), (px, py) = points[0], points[1]
    radius = math.hypot(px - cx, py - cy)
    return Drawing(math.pi * radius**2, partial(fill_disk, cx, cy, radius))


def bitmap_drawing(shape: dict, points: np.ndarray, max_pixels: int) -> Drawing:
    """A LabelMe mask shape: a base64 PNG whose top-left pixel is at the box's first corner."""
    encoded = shape.get("mask")
    if not isinstance(encoded, str):
        raise ValueError("mask shape has no base64 PNG in 'mask'")
    try:
        data = base64.b64decode(encoded, validate=True)
        bits = decode_mask(data, "mask", max_pixels=max_pixels).pixels > 0
    except binascii.Error:
        raise ValueError("mask shape's 'mask' is not valid base64") from None
    except InputError as exc:
        raise ValueError(f"mask shape's image: {exc.problem}") from None
    x, y = (int(v) for v in np.floor(points.min(axis=0)))
    return Drawing(float(bits.sum()), partial(fill_bitmap, x, y, bits))


def shape_type(shape: dict) -> str:
    """The shape's type; files from LabelMe versions before shape_type hold polygons."""
    return shape.get("shape_type") or "polygon"


def file_problem(data: dict) -> str | None:
    """Why a LabelMe JSON is unusable, or None."""
    image_path = data.get("imagePath")
    if not isinstance(image_path, str) or not image_path.strip():
        return "needs an imagePath naming the photo file (embedded imageData is not used)"
    for key in ("imageWidth", "imageHeight"):
        if not is_size(data.get(key)):
            return f"needs a positive integer {key}"
    shapes = data["shapes"]
    if not isinstance(shapes, list):
        return f"shapes must be an array, got a JSON {json_type(shapes)}"
    for i, shape in enumerate(shapes):
        if not isinstance(shape, dict) or not isinstance(shape.get("label"), str):
            return f"shapes[{i}] needs a label"
        if not isinstance(shape.get("shape_type") or "polygon", str):
            return f"shapes[{i}] has a shape_type that is not a string"
    return None


def shape_drawing(shape: dict, max_pixels: int, size: tuple[int, int] | None = None) -> Drawing:
    """Geometry of one LabelMe shape (a mask shape's bitmap limited to `max_pixels`); with the
    image's `size` (width, height), points far outside it are an error (`coco.as_points`)."""
    kind = shape_type(shape)
    if kind in ("polygon", "oriented_rectangle"):
        return polygons_drawing([as_points(shape.get("points"), 3, size)])
    if kind == "rectangle":
        return rectangle_drawing(as_points(shape.get("points"), 2, size))
    if kind == "circle":
        return circle_drawing(as_points(shape.get("points"), 2, size))
    if kind == "mask":
        return bitmap_drawing(shape, as_points(shape.get("points"), 1, size), max_pixels)
    raise ValueError(f"unsupported shape_type {kind!r}")


class LabelMeReader:
    """Reads LabelMe JSONs under `annotations` (default: the `images` folder), recursively."""

    def __init__(self, config: DatasetConfig, taxonomy: Taxonomy) -> None:
        self.root = normal_path(config.root)
        self.folder = normal_path(config.root / (config.annotations or config.images))
        self.allow_outside = config.allow_outside_root
        self.max_pixels = config.max_pixels
        self.classes = label_classes(taxonomy, config.label_map, config.root)
        self.class_names = taxonomy.names
        split_file = config.split.file
        self.split_file = normal_path(config.root / split_file) if split_file else None

    def list_records(self) -> tuple[list[Record], list[Problem]]:
        if not self.folder.is_dir():
            raise InputError(self.folder, "folder not found")
        files, clashes = walk_files(self.folder, (".json",))
        problems = [
            Problem(
                "error",
                "ambiguous-name",
                "another JSON has the same name with other "
                "capitals in its extension; it is ignored",
                str(path),
            )
            for path in clashes
        ]
        records = []
        for key, path in files.items():
            if path == self.split_file:
                continue
            record = self._record(key, path, problems)
            if record is not None:
                records.append(record)
        return records, problems + self._unknown(records)

    def read_mask(self, record: Record, height: int, width: int) -> np.ndarray:
        return rasterise(record.annotation, height, width, record.annotation_path, self._drawing)

    def _record(self, key: str, path: Path, problems: list[Problem]) -> Record | None:
        """The record for one JSON, or None after adding the problem that skips it."""
        try:
            data = read_json(path)
        except InputError as exc:
            problems.append(Problem("error", "unreadable-annotation", exc.problem, str(path)))
            return None
        if not isinstance(data, dict) or "shapes" not in data:
            problems.append(
                Problem(
                    "warning",
                    "not-labelme",
                    "JSON without LabelMe shapes; it is ignored",
                    str(path),
                )
            )
            return None
        reason = file_problem(data)
        if reason is not None:
            problems.append(Problem("error", "invalid-annotation", reason, str(path)))
            return None
        try:
            image_path = locate_image(path.parent, data["imagePath"], self.root, self.allow_outside)
        except UnsafePath as exc:
            problems.append(unsafe_path_problem(exc, "", path))
            return None
        if not image_path.is_file():
            embedded = " (its embedded imageData is not used)" if data.get("imageData") else ""
            problems.append(
                Problem(
                    "error", "missing-image", f"photo {image_path} not found{embedded}", str(path)
                )
            )
            return None
        lines = [s for s in data["shapes"] if shape_type(s) in LINE_TYPES]
        if lines:
            problems.append(
                Problem(
                    "warning",
                    "ignored-shape",
                    f"{len(lines)} point or line shape(s) ignored: they have no area",
                    str(path),
                )
            )
        labelled = Labelled(
            "", data["imageWidth"], data["imageHeight"], self._regions(data["shapes"])
        )
        return Record(id=key, image_path=image_path, annotation_path=path, annotation=labelled)

    def _regions(self, shapes: list[dict]) -> tuple[Region, ...]:
        """The shapes that have area, in file order."""
        return tuple(
            Region(
                f"shape {i} ({shape_type(s)})", s["label"], class_of(s["label"], self.classes), s
            )
            for i, s in enumerate(shapes)
            if shape_type(s) not in LINE_TYPES
        )

    def _drawing(self, region: Region, labelled: Labelled) -> Drawing:
        return shape_drawing(region.data, self.max_pixels, (labelled.width, labelled.height))

    def _unknown(self, records: list[Record]) -> list[Problem]:
        """One problem per label that has no class, counting its shapes and files."""
        shapes: Counter[str] = Counter()
        files: dict[str, list[Path]] = {}
        for record in records:
            for region in record.annotation.regions:
                if region.class_id is None:
                    shapes[region.label] += 1
                    files.setdefault(region.label, []).append(record.annotation_path)
        hint = unknown_label_hint(self.class_names)
        return [
            Problem(
                "error",
                "unknown-label",
                f"label {label!r} has no class ({n} shape(s) in "
                f"{len(set(files[label]))} file(s)); {hint}",
                str(files[label][0]),
            )
            for label, n in shapes.items()
        ]
