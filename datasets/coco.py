"""COCO datasets: one JSON of images, categories and polygon or RLE annotations.

Rules shared with the LabelMe reader (which imports the helpers defined here):

- Geometry: coordinates are float pixel coordinates in which pixel (row r, column c) covers
  [c, c+1) x [r, r+1), as in COCO. A pixel belongs to a polygon when its centre does (even-odd
  rule), which is what pycocotools computes; RLE is column-major, as in pycocotools.
- Order: a photo's regions are painted largest first, so a small patch drawn on a large one stays
  visible; regions of equal area keep file order (the later one on top). The area used is the
  geometric one (polygon area, RLE pixel count, circle area), not the file's `area` field.
- Labels: a label (COCO category name, LabelMe shape label) maps to a class through the dataset's
  `label_map`, else to the class of the same name, ignoring case. A label with no class is a
  listing problem, and `read_mask` raises InputError for every photo that uses it: treating it
  as background would teach the model that the lesion is skin. To drop a label on purpose, map
  it to `background`.
- Image paths written in annotation files must be relative and stay inside the dataset root. The
  check is on the normalised path, without following symlinks (a data folder may be a symlink
  to another disk); `allow_outside_root: true` lifts it.
- Crowd annotations (`iscrowd: 1`) are painted like any other: semantic masks have no instances.
"""

from __future__ import annotations

import os
import posixpath
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from dermaseg import fileio
from dermaseg.datasets.config import DatasetConfig
from dermaseg.datasets.records import Problem, Record
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError

Painter = Callable[[np.ndarray, int], None]  # paints one region's pixels of a mask with a value


@dataclass(frozen=True)
class Region:
    """One labelled region as the file gives it; `data` is format-specific geometry."""

    name: str  # how messages refer to it, e.g. "annotation 17"
    label: str
    class_id: int | None  # None: the label has no class
    data: Any


@dataclass(frozen=True)
class Labelled:
    """A record's payload: the photo size the labels were drawn on, and the regions."""

    name: str  # prefix for messages, e.g. "image 12" (empty when the file is the photo's own)
    width: int
    height: int
    regions: tuple[Region, ...]


@dataclass(frozen=True)
class Drawing:
    """A region's geometry ready to paint: its area in pixels (for ordering), how to paint it."""

    area: float
    paint: Painter


class UnsafePath(ValueError):
    """An image path in an annotation file that could read files outside the dataset."""


# ---- shared helpers (also used by the LabelMe reader) ----------------------------------------


def normal_path(path: Path) -> Path:
    """`path` with `.` and `..` removed lexically (symlinks are not resolved)."""
    return Path(os.path.normpath(path))


def locate_image(base: Path, reference: str, root: Path, allow_outside: bool) -> Path:
    """The photo a relative `reference` (slashes or backslashes) from `base` points to.

    Raises UnsafePath for absolute references and for ones that leave `root`, unless
    `allow_outside`.
    """
    text = reference.replace("\\", "/")
    if PureWindowsPath(reference).anchor and not allow_outside:
        raise UnsafePath(f"image path {reference!r} is absolute")
    path = normal_path(base / text)
    if not allow_outside and not path.is_relative_to(root):
        raise UnsafePath(f"image path {reference!r} leaves the dataset root {root}")
    return path


def unsafe_path_problem(exc: UnsafePath, where: str, source: Path) -> Problem:
    return Problem(
        "error",
        "unsafe-path",
        f"{where}{exc}; set allow_outside_root: true in the dataset config to allow it",
        str(source),
    )


def label_classes(
    taxonomy: Taxonomy, label_map: dict[str, str | int] | None, source: Path
) -> dict[str, int]:
    """Lower-cased label -> class id: every class by name, then `label_map`, which wins."""
    classes = {name.lower(): i for i, name in enumerate(taxonomy.names)}
    for label, target in (label_map or {}).items():
        try:
            classes[label.strip().lower()] = taxonomy.class_id(target)
        except KeyError as exc:
            raise InputError(source, f"label_map[{label!r}]: {exc.args[0]}") from None
    return classes


def class_of(label: str, classes: dict[str, int]) -> int | None:
    return classes.get(label.strip().lower())


def unknown_label_hint(taxonomy_names: list[str]) -> str:
    return f"map it in the dataset's label_map (classes: {', '.join(taxonomy_names)})"


def read_json(path: Path) -> Any:
    """Parse a JSON file (a regular file, strict JSON); raises InputError with a one-line
    reason."""
    return fileio.read_json(path)


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def as_points(values: Any, minimum: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """Float [K, 2] (x, y) points from [[x, y], ...] or a flat [x0, y0, x1, y1, ...].

    With the image's `size` (width, height), points further than one image size outside it are
    an error: finite but absurd coordinates (1e308) would otherwise label the whole photo.
    """
    try:
        points = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("coordinates must be numbers") from None
    if points.ndim == 1 and points.size % 2 == 0:
        points = points.reshape(-1, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError("coordinates must be x, y pairs")
    if not np.isfinite(points).all():
        raise ValueError("coordinates must be finite numbers")
    if len(points) < minimum:
        raise ValueError(f"needs at least {minimum} points, got {len(points)}")
    if size is not None and len(points):
        width, height = size
        low, high = points.min(axis=0), points.max(axis=0)
        if low[0] < -width or high[0] > 2 * width or low[1] < -height or high[1] > 2 * height:
            raise ValueError(
                f"coordinates far outside the {width}x{height} image (x {low[0]:.4g}.."
                f"{high[0]:.4g}, y {low[1]:.4g}..{high[1]:.4g})"
            )
    return points


def polygon_area(points: np.ndarray) -> float:
    """Area enclosed by a polygon (shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))) / 2


def fill_spans(
    mask: np.ndarray, rows: np.ndarray, starts: np.ndarray, stops: np.ndarray, value: int
) -> None:
    """Set mask[row, start:stop] = value for each span; spans of one row must not overlap."""
    keep = starts < stops
    rows, starts, stops = rows[keep], starts[keep], stops[keep]
    if rows.size == 0:
        return
    top, left = rows.min(), starts.min()
    change = np.zeros((rows.max() + 1 - top, stops.max() + 1 - left), dtype=np.int8)
    np.add.at(change, (rows - top, starts - left), 1)
    np.add.at(change, (rows - top, stops - left), -1)
    inside = np.cumsum(change, axis=1, dtype=np.int8)[:, :-1] > 0
    mask[top : top + inside.shape[0], left : left + inside.shape[1]][inside] = value


def fill_polygon(points: np.ndarray, mask: np.ndarray, value: int) -> None:
    """Set the pixels whose centre lies inside the polygon (even-odd rule) to `value`.

    A scanline fill through pixel centres, vectorised over edge/row crossings. cv2.fillPoly is
    not used: it rounds vertices to whole rows and paints every pixel an edge touches, which
    grows each patch by about half a pixel all round compared with pycocotools.
    """
    height, width = mask.shape
    x0, y0 = points[:, 0], points[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    # an edge crosses the rows whose centre line y = r + 0.5 lies in [min(y0, y1), max(y0, y1))
    first = np.clip(np.ceil(np.minimum(y0, y1) - 0.5), 0, height).astype(np.int64)
    stop = np.clip(np.ceil(np.maximum(y0, y1) - 0.5), 0, height).astype(np.int64)
    counts = stop - first
    edge = np.repeat(np.arange(len(points)), counts)
    rows = first[edge] + np.arange(edge.size) - np.repeat(np.cumsum(counts) - counts, counts)
    xs = x0[edge] + (rows + 0.5 - y0[edge]) / (y1[edge] - y0[edge]) * (x1[edge] - x0[edge])
    order = np.lexsort((xs, rows))
    rows = rows[order]
    cols = np.clip(np.ceil(xs[order] - 0.5), 0, width).astype(np.int64)
    fill_spans(mask, rows[0::2], cols[0::2], cols[1::2], value)


def fill_polygons(polygons: list[np.ndarray], mask: np.ndarray, value: int) -> None:
    """Paint the union of several polygons (the parts of one region)."""
    for points in polygons:
        fill_polygon(points, mask, value)


def polygons_drawing(polygons: list[np.ndarray]) -> Drawing:
    return Drawing(sum(polygon_area(p) for p in polygons), partial(fill_polygons, polygons))


def paint_drawings(drawings: list[tuple[int, Drawing]], height: int, width: int) -> np.ndarray:
    """A class-id mask with (class id, drawing) pairs painted largest first (ties: later on top)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for class_id, drawing in sorted(drawings, key=lambda item: -item[1].area):
        drawing.paint(mask, class_id)
    return mask


def rasterise(
    labelled: Labelled,
    height: int,
    width: int,
    source: Path,
    draw: Callable[[Region, Labelled], Drawing],
) -> np.ndarray:
    """Check the labelled size against the photo's, then paint every region with `draw`."""
    prefix = f"{labelled.name}: " if labelled.name else ""
    if (labelled.width, labelled.height) != (width, height):
        hint = (
            " (it matches the photo before EXIF rotation: label the upright photo)"
            if (labelled.width, labelled.height) == (height, width)
            else ""
        )
        raise InputError(
            source,
            f"{prefix}annotation size {labelled.width}x{labelled.height} "
            f"but photo is {width}x{height}{hint}",
        )
    drawings = []
    for region in labelled.regions:
        if region.class_id is None:
            raise InputError(
                source,
                f"{prefix}{region.name}: label {region.label!r} has no "
                "class; map it in the dataset's label_map",
            )
        try:
            drawings.append((region.class_id, draw(region, labelled)))
        except ValueError as exc:
            raise InputError(source, f"{prefix}{region.name}: {exc}") from None
    return paint_drawings(drawings, height, width)


# ---- COCO run-length encoding ----------------------------------------------------------------


def decode_rle_string(text: str) -> np.ndarray:
    """Run lengths from pycocotools' compressed RLE string.

    Each number is a run of characters '0'+v holding 5 bits each (least significant first) and a
    continuation bit (0x20); the last character's 0x10 bit is the sign. Numbers from the fourth
    on are stored as the difference from the number two places before.
    """
    try:
        codes = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise ValueError("compressed RLE has non-ASCII characters") from None
    if codes.size == 0:
        return codes
    if ((codes < 0) | (codes > 63)).any():
        raise ValueError("compressed RLE has characters outside '0'..'o'")
    more = (codes & 0x20) != 0
    if more[-1]:
        raise ValueError("compressed RLE ends in the middle of a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 7:
        raise ValueError("compressed RLE has a number too large for a run length")
    position = np.arange(codes.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((codes & 0x1F) << (5 * position), starts)
    negative = (codes[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * lengths[negative])
    values[1::2] = np.cumsum(values[1::2])
    values[2::2] = np.cumsum(values[2::2])
    return values


def rle_runs(rle: dict, height: int, width: int) -> np.ndarray:
    """Validated run lengths of a COCO RLE dict ({"size": [h, w], "counts": list or string})."""
    size = rle.get("size")
    if size != [height, width]:
        raise ValueError(f"RLE size {size} is not the image's [height, width] [{height}, {width}]")
    counts = rle.get("counts")
    if isinstance(counts, str):
        runs = decode_rle_string(counts)
    elif isinstance(counts, list) and all(type(c) is int and 0 <= c < 2**62 for c in counts):
        runs = np.asarray(counts, dtype=np.int64)
    else:
        raise ValueError("RLE counts must be a list of run lengths or a compressed string")
    if ((runs < 0) | (runs > height * width)).any():
        raise ValueError(f"RLE has run lengths outside 0..{height * width}")
    if int(runs.sum()) != height * width:
        raise ValueError(f"RLE runs cover {int(runs.sum())} pixels, not {height}x{width}")
    return runs


def fill_rle(runs: np.ndarray, mask: np.ndarray, value: int) -> None:
    """Set the foreground pixels of column-major run lengths (background first) to `value`."""
    height, width = mask.shape
    foreground = np.repeat(np.arange(runs.size) % 2 == 1, runs)
    mask[foreground.reshape(width, height).T] = value


def rle_drawing(rle: dict, height: int, width: int) -> Drawing:
    runs = rle_runs(rle, height, width)
    return Drawing(float(runs[1::2].sum()), partial(fill_rle, runs))


def coco_drawing(region: Region, image: Labelled) -> Drawing:
    """A COCO segmentation (list of flat polygons, or an RLE dict) ready to paint."""
    segmentation = region.data
    if isinstance(segmentation, dict):
        return rle_drawing(segmentation, image.height, image.width)
    if isinstance(segmentation, list) and segmentation:
        size = (image.width, image.height)
        return polygons_drawing([as_points(p, 3, size) for p in segmentation])
    raise ValueError("segmentation must be a non-empty list of polygons or an RLE object")


# ---- the COCO reader -------------------------------------------------------------------------


def is_id(value: Any) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def coco_sections(data: Any, path: Path) -> tuple[list, list, list]:
    """The images, annotations and categories lists; raises InputError if the shape is wrong."""
    if not isinstance(data, dict):
        raise InputError(
            path,
            f"expected a COCO object with images, annotations and categories, "
            f"got a JSON {json_type(data)}",
        )
    if "images" not in data:
        raise InputError(path, 'no "images" list: not a COCO annotation file')
    sections = []
    for key in ("images", "annotations", "categories"):
        value = data.get(key, [])
        if not isinstance(value, list):
            raise InputError(path, f'"{key}" must be an array, got a JSON {json_type(value)}')
        sections.append(value)
    return sections[0], sections[1], sections[2]


def category_names(categories: list, path: Path) -> dict[int | str, str]:
    """Category id -> name; raises InputError for a malformed entry."""
    names: dict[int | str, str] = {}
    for i, category in enumerate(categories):
        if not (
            isinstance(category, dict)
            and is_id(category.get("id"))
            and isinstance(category.get("name"), str)
        ):
            raise InputError(path, f"categories[{i}] needs an id and a name")
        names[category["id"]] = category["name"]
    return names


def image_entry_problem(entry: Any) -> str | None:
    """Why an `images` entry is unusable, or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    if not is_id(entry.get("id")):
        return "needs an integer or string id"
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        return "needs a file_name"
    for key in ("width", "height"):
        if not is_size(entry.get(key)):
            return f"needs a positive integer {key}"
    return None


def group_annotations(annotations: list, path: Path) -> tuple[dict[Any, list[dict]], list[Problem]]:
    """Annotations by image id, in file order, plus problems for entries with no image id."""
    groups: dict[Any, list[dict]] = defaultdict(list)
    problems = []
    for i, annotation in enumerate(annotations):
        if isinstance(annotation, dict) and is_id(annotation.get("image_id")):
            groups[annotation["image_id"]].append(annotation)
        else:
            problems.append(
                Problem(
                    "error",
                    "invalid-entry",
                    f"annotations[{i}] is not an object with an image_id",
                    str(path),
                )
            )
    return groups, problems


class CocoReader:
    """Reads a COCO JSON (`annotations`, relative to the root) whose file_names are relative to
    the `images` folder. Every record shares the JSON as its annotation_path."""

    def __init__(self, config: DatasetConfig, taxonomy: Taxonomy) -> None:
        if config.annotations is None:
            raise InputError(config.root, "format coco needs `annotations`: the COCO JSON file")
        self.root = normal_path(config.root)
        self.json_path = normal_path(config.root / config.annotations)
        self.image_dir = normal_path(config.root / config.images)
        self.allow_outside = config.allow_outside_root
        self.classes = label_classes(taxonomy, config.label_map, config.root)
        self.class_names = taxonomy.names

    def list_records(self) -> tuple[list[Record], list[Problem]]:
        images, annotations, categories = coco_sections(read_json(self.json_path), self.json_path)
        names = category_names(categories, self.json_path)
        groups, problems = group_annotations(annotations, self.json_path)
        records: list[Record] = []
        seen_images: set[Any] = set()
        seen_records: set[str] = set()
        for i, entry in enumerate(images):
            reason = image_entry_problem(entry)
            if reason is None and entry["id"] in seen_images:
                reason = f"repeats image id {entry['id']!r}; it is ignored"
            if reason is not None:
                problems.append(
                    Problem("error", "invalid-entry", f"images[{i}] {reason}", str(self.json_path))
                )
                continue
            seen_images.add(entry["id"])
            record = self._record(entry, groups.get(entry["id"], []), names, problems)
            if record is not None and record.id in seen_records:
                problems.append(
                    self._problem(
                        "ambiguous-name",
                        entry,
                        "has the same name as another image (other extension?); it is ignored",
                    )
                )
            elif record is not None:
                seen_records.add(record.id)
                records.append(record)
        problems += self._orphans(groups, seen_images) + self._unknown(groups, seen_images, names)
        return records, problems

    def read_mask(self, record: Record, height: int, width: int) -> np.ndarray:
        return rasterise(record.annotation, height, width, self.json_path, coco_drawing)

    def _problem(self, kind: str, entry: dict, message: str) -> Problem:
        return Problem(
            "error",
            kind,
            f"image {entry['id']!r} ({entry['file_name']}) {message}",
            str(self.json_path),
        )

    def _record(
        self,
        entry: dict,
        annotations: list[dict],
        names: dict[int | str, str],
        problems: list[Problem],
    ) -> Record | None:
        """The record for one image entry, or None after adding the problem that skips it."""
        try:
            image_path = locate_image(
                self.image_dir, entry["file_name"], self.root, self.allow_outside
            )
        except UnsafePath as exc:
            problems.append(unsafe_path_problem(exc, f"image {entry['id']!r}: ", self.json_path))
            return None
        if not image_path.is_file():
            problems.append(self._problem("missing-image", entry, f"not found at {image_path}"))
            return None
        regions = tuple(self._region(a, i, names) for i, a in enumerate(annotations))
        labelled = Labelled(f"image {entry['id']!r}", entry["width"], entry["height"], regions)
        key = posixpath.normpath(entry["file_name"].replace("\\", "/"))
        return Record(
            id=str(PurePosixPath(key).with_suffix("")),
            image_path=image_path,
            annotation_path=self.json_path,
            annotation=labelled,
        )

    def _region(self, annotation: dict, index: int, names: dict[int | str, str]) -> Region:
        label = self._label(annotation, names)
        return Region(
            name=f"annotation {annotation.get('id', f'#{index}')!r}",
            label=label or f"category id {annotation.get('category_id')!r}",
            class_id=class_of(label, self.classes) if label is not None else None,
            data=annotation.get("segmentation"),
        )

    @staticmethod
    def _label(annotation: dict, names: dict[int | str, str]) -> str | None:
        category = annotation.get("category_id")
        return names.get(category) if is_id(category) else None

    def _orphans(self, groups: dict[Any, list[dict]], image_ids: set[Any]) -> list[Problem]:
        return [
            Problem(
                "warning",
                "orphan-annotation",
                f"{len(group)} annotation(s) refer to image id {image_id!r}, "
                "which is not in images",
                str(self.json_path),
            )
            for image_id, group in groups.items()
            if image_id not in image_ids
        ]

    def _unknown(
        self, groups: dict[Any, list[dict]], image_ids: set[Any], names: dict[int | str, str]
    ) -> list[Problem]:
        """One problem per category that has no class, counting its annotations."""
        unmapped: Counter[str] = Counter()
        undefined: Counter[str] = Counter()
        for image_id, group in groups.items():
            if image_id not in image_ids:
                continue
            for annotation in group:
                label = self._label(annotation, names)
                if label is None:
                    undefined[repr(annotation.get("category_id"))] += 1
                elif class_of(label, self.classes) is None:
                    unmapped[label] += 1
        hint = unknown_label_hint(self.class_names)
        return [
            *(
                Problem(
                    "error",
                    "unknown-category",
                    f"category id {cid} is not in categories ({n} annotation(s))",
                    str(self.json_path),
                )
                for cid, n in undefined.items()
            ),
            *(
                Problem(
                    "error",
                    "unknown-category",
                    f"category {label!r} has no class ({n} annotation(s)); {hint}",
                    str(self.json_path),
                )
                for label, n in unmapped.items()
            ),
        ]
