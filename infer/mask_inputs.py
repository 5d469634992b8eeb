"""Masks people have, for `plan --mask`: class-id or any-value PNGs (with a value map), COCO
files (our own NAME.coco.json, CVAT and Label Studio exports), LabelMe JSONs, and folders of
them matched to photos by name. Each becomes a class-id mask the size of the upright photo.

COCO and LabelMe are rasterised by the dataset readers' own code (`dermaseg.datasets.coco`,
`dermaseg.datasets.labelme`), so a mask means the same to `plan` as to `train`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import numpy as np

from dermaseg.datasets.coco import (
    Labelled,
    Region,
    category_names,
    class_of,
    coco_drawing,
    coco_sections,
    image_entry_problem,
    label_classes,
    rasterise,
    read_json,
)
from dermaseg.datasets.images import decode_mask, read_file
from dermaseg.datasets.labelme import LINE_TYPES, file_problem, shape_drawing, shape_type
from dermaseg.datasets.maskfolder import MASK_SUFFIXES, apply_lookup, value_lookup
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import DermasegError, InputError
from dermaseg.infer.inputs import Photo
from dermaseg.infer.schema import SourceInfo

# a folder's file for photo STEM, in order of preference: a review correction first
FOLDER_NAMES = ("{stem}.corrected", "{stem}", "{stem}.mask", "{stem}_mask", "{stem}.coco")
JSON_SUFFIXES = (".json",)


@dataclass(frozen=True)
class MaskValues:
    """Stored mask value -> class id (a 256-entry table; -1: no class), and how it was given."""

    table: np.ndarray
    text: str | None = None  # as given on the command line; None: values are class ids


def parse_mask_values(text: str | None, taxonomy: Taxonomy) -> MaskValues:
    """`0:background,255:vitiligo` (class names or ids) -> a lookup table; None: class ids."""
    if not text:
        return MaskValues(value_lookup(taxonomy, None))
    mapping: dict[int, str | int] = {}
    for item in text.split(","):
        value, sep, target = item.strip().partition(":")
        if not sep or not value.strip().isdigit() or not 0 <= int(value) <= 255:
            raise DermasegError(
                f"--mask-values: {item.strip()!r} is not VALUE:CLASS with VALUE in 0..255 "
                "(e.g. 0:background,255:vitiligo)"
            )
        target = target.strip()
        mapping[int(value)] = int(target) if target.isdigit() else target
    try:
        return MaskValues(value_lookup(taxonomy, mapping), text)
    except KeyError as exc:
        raise DermasegError(f"--mask-values: {exc.args[0]}") from None


def pair_masks(masks: list[Path], photos: Sized) -> list[Path]:
    """The mask argument for each photo: one per photo, or one folder / one COCO file for all."""
    if len(masks) == 1 and len(photos) > 1:
        only = masks[0]
        if only.is_dir() or only.suffix.lower() in JSON_SUFFIXES:
            return masks * len(photos)
    if len(masks) != len(photos):
        raise DermasegError(
            f"--mask given {len(masks)} times for {len(photos)} photos (give one per photo, "
            "or one folder of masks named after the photos, or one COCO file)"
        )
    return list(masks)


def read_photo_mask(
    path: Path, photo: Photo, taxonomy: Taxonomy, values: MaskValues | None = None
) -> tuple[np.ndarray, SourceInfo]:
    """The class-id mask for `photo` from a mask image, COCO or LabelMe JSON, or a folder."""
    values = values or MaskValues(value_lookup(taxonomy, None))
    if path.is_dir():
        path = find_in_folder(path, photo.path)
    data = read_file(path)
    if path.suffix.lower() in JSON_SUFFIXES:
        mask = _json_mask(path, photo, taxonomy)
    else:
        mask = _image_mask(data, path, photo, taxonomy, values)
    source = SourceInfo(kind="mask", name=path.name, sha256=hashlib.sha256(data).hexdigest())
    return mask, source


def find_in_folder(folder: Path, photo: Path) -> Path:
    """The mask in `folder` named after the photo (see FOLDER_NAMES; any mask or JSON suffix)."""
    files = {p.name.lower(): p for p in folder.iterdir() if p.is_file()}
    for pattern in FOLDER_NAMES:
        base = pattern.format(stem=photo.stem).lower()
        for suffix in (*MASK_SUFFIXES, *JSON_SUFFIXES):
            found = files.get(base + suffix)
            if found is not None and found.resolve() != photo.resolve():
                return found
    raise InputError(
        folder, f"no mask named after {photo.name} (looked for {photo.stem}.png, .json and similar)"
    )


def _check_size(mask: np.ndarray, path: Path, photo: Photo) -> None:
    if mask.shape != photo.rgb.shape[:2]:
        height, width = photo.rgb.shape[:2]
        hint = (
            " (it matches the photo before EXIF rotation: draw on the upright photo)"
            if mask.shape == (width, height)
            else ""
        )
        raise InputError(
            path,
            f"mask is {mask.shape[1]}x{mask.shape[0]} but photo {photo.path.name} is "
            f"{width}x{height}{hint}",
        )


def _image_mask(
    data: bytes, path: Path, photo: Photo, taxonomy: Taxonomy, values: MaskValues
) -> np.ndarray:
    raw = decode_mask(data, path).pixels
    _check_size(raw, path, photo)
    try:
        return apply_lookup(raw, values.table, path)
    except InputError:
        present = sorted(int(v) for v in np.unique(raw))
        unknown = [v for v in present if values.table[v] < 0]
        shown = ", ".join(map(str, unknown[:6])) + (", ..." if len(unknown) > 6 else "")
        if values.text is None:
            example = ",".join(
                f"{v}:{'background' if v == 0 else taxonomy.names[min(1, len(taxonomy.names) - 1)]}"
                for v in present[:2]
            )
            raise InputError(
                path,
                f"mask values {shown} are not class ids (0..{taxonomy.num_classes - 1}); "
                f"say what they mean with --mask-values, e.g. {example}",
            ) from None
        raise InputError(path, f"mask values {shown} are not in --mask-values") from None


def _json_mask(path: Path, photo: Photo, taxonomy: Taxonomy) -> np.ndarray:
    data = read_json(path)
    if isinstance(data, dict) and "shapes" in data:
        return _labelme_mask(data, path, photo, taxonomy)
    if isinstance(data, dict) and "images" in data:
        return _coco_mask(data, path, photo, taxonomy)
    raise InputError(path, "neither a COCO file (images, annotations) nor a LabelMe file (shapes)")


def _same_photo(file_name: str, photo: Path) -> bool:
    """An annotation's file name refers to the photo: the same base name, or the same stem
    (CVAT and Label Studio may rename or prefix; Label Studio writes `images/<hash>-name.jpg`)."""
    name = PurePosixPath(PureWindowsPath(file_name).as_posix()).name
    stem = PurePosixPath(name).stem
    return name == photo.name or stem == photo.stem or stem.endswith("-" + photo.stem)


def _coco_mask(data: dict, path: Path, photo: Photo, taxonomy: Taxonomy) -> np.ndarray:
    images, annotations, categories = coco_sections(data, path)
    names = category_names(categories, path)
    usable = [e for e in images if image_entry_problem(e) is None]
    entries = [e for e in usable if _same_photo(e["file_name"], photo.path)]
    if not entries and len(usable) == 1:
        entries = usable  # one image: the file is this photo's own, whatever it was called
    if len(entries) != 1:
        found = "no image" if not entries else f"{len(entries)} images"
        raise InputError(path, f"{found} named {photo.path.name} in the COCO file")
    entry = entries[0]
    classes = label_classes(taxonomy, None, path)
    regions = []
    for i, annotation in enumerate(a for a in annotations if isinstance(a, dict)):
        if annotation.get("image_id") != entry["id"]:
            continue
        category = annotation.get("category_id")
        label = names.get(category) if isinstance(category, int | str) else None
        regions.append(
            Region(
                name=f"annotation {annotation.get('id', f'#{i}')!r}",
                label=label or f"category id {category!r}",
                class_id=None if label is None else class_of(label, classes),
                data=annotation.get("segmentation"),
            )
        )
    labelled = Labelled(f"image {entry['id']!r}", entry["width"], entry["height"], tuple(regions))
    height, width = photo.rgb.shape[:2]
    return rasterise(labelled, height, width, path, coco_drawing)


def _labelme_mask(data: dict, path: Path, photo: Photo, taxonomy: Taxonomy) -> np.ndarray:
    reason = file_problem(data)
    if reason is not None:
        raise InputError(path, reason)
    if not _same_photo(data["imagePath"], photo.path):
        raise InputError(path, f"is drawn on {data['imagePath']}, not on {photo.path.name}")
    classes = label_classes(taxonomy, None, path)
    regions = tuple(
        Region(f"shape {i} ({shape_type(s)})", s["label"], class_of(s["label"], classes), s)
        for i, s in enumerate(data["shapes"])
        if shape_type(s) not in LINE_TYPES
    )
    labelled = Labelled("", data["imageWidth"], data["imageHeight"], regions)
    height, width = photo.rgb.shape[:2]
    return rasterise(
        labelled,
        height,
        width,
        path,
        lambda region, _labelled: shape_drawing(region.data, height * width, (width, height)),
    )
