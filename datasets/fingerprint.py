"""A dataset's fingerprint: what the `auto` recipe reads to choose sizes and schedule.

As nnU-Net does before planning: photo sizes, how large the labelled objects are relative to the
photo, how many photos there are and how balanced the classes are. Computed from the training
split (at most `limit` photos, evenly spread), numpy/OpenCV only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from dermaseg.datasets.dataset import Dataset
from dermaseg.errors import InputError

SAMPLE_LIMIT = 200  # photos read for the fingerprint (evenly spread over the training split)
MIN_OBJECT_AREA = 16  # pixels; smaller labelled specks are annotation noise, not objects


@dataclass(frozen=True)
class Fingerprint:
    """Summary statistics of the training photos (sizes in pixels of the original photos)."""

    photos: int  # photos in the training split
    sampled: int  # photos read to measure the rest
    long_side_median: float
    long_side_p10: float
    short_side_median: float
    # connected labelled objects, size = sqrt(area) / the photo's longer side
    objects: int
    object_size_p10: float
    object_size_median: float
    object_size_p90: float
    foreground_fraction: float  # labelled (non-background) pixels / all pixels
    photos_with_foreground: float  # share of photos with any labelled pixel
    rarest_class_fraction: float  # the rarest non-background class's pixels / all pixels

    def to_dict(self) -> dict:
        return asdict(self)


def object_sizes(mask: np.ndarray) -> list[float]:
    """sqrt(area) / longer side of every connected region of each non-background class (regions
    under MIN_OBJECT_AREA pixels left out)."""
    side = max(mask.shape)
    sizes = []
    for value in np.unique(mask):
        if value == 0 or value == 255:  # background, ignored pixels
            continue
        count, _, stats, _ = cv2.connectedComponentsWithStats((mask == value).astype(np.uint8))
        areas = stats[1:count, cv2.CC_STAT_AREA]
        sizes.extend(float(np.sqrt(a)) / side for a in areas if a >= MIN_OBJECT_AREA)
    return sizes


def summarise(
    sizes: list[tuple[int, int]],
    masks_sizes: list[list[float]],
    class_pixels: np.ndarray,
    photos: int,
) -> Fingerprint:
    """The fingerprint of measured photos: `sizes` (height, width) and `masks_sizes` (object
    sizes) per photo, `class_pixels` summed per class id; `photos` in the split."""
    if not sizes:
        raise ValueError("no readable photos to fingerprint")
    longs = np.array([max(s) for s in sizes], dtype=float)
    shorts = np.array([min(s) for s in sizes], dtype=float)
    objects = np.array([o for per in masks_sizes for o in per], dtype=float)
    total = max(float(class_pixels.sum()), 1.0)
    foreground = class_pixels[1:]
    present = foreground[foreground > 0]
    return Fingerprint(
        photos=photos,
        sampled=len(sizes),
        long_side_median=float(np.median(longs)),
        long_side_p10=float(np.percentile(longs, 10)),
        short_side_median=float(np.median(shorts)),
        objects=len(objects),
        object_size_p10=float(np.percentile(objects, 10)) if len(objects) else 0.0,
        object_size_median=float(np.median(objects)) if len(objects) else 0.0,
        object_size_p90=float(np.percentile(objects, 90)) if len(objects) else 0.0,
        foreground_fraction=float(foreground.sum()) / total,
        photos_with_foreground=float(np.mean([bool(per) for per in masks_sizes])),
        rarest_class_fraction=float(present.min()) / total if len(present) else 0.0,
    )


def fingerprint(dataset: Dataset, split: str = "train", limit: int = SAMPLE_LIMIT) -> Fingerprint:
    """Read up to `limit` photos of `split` (evenly spread) and summarise them; unreadable
    photos are skipped (`data check` reports them)."""
    records = dataset.split_records(split) or dataset.records
    if not records:
        raise InputError(dataset.config.root, "no photos to fingerprint")
    picked = records if len(records) <= limit else records[:: -(-len(records) // limit)]
    sizes, per_photo = [], []
    class_pixels = np.zeros(256, np.int64)
    for record in picked:
        try:
            sample = dataset.load(record)
        except InputError:
            continue
        sizes.append(sample.mask.shape[:2])
        per_photo.append(object_sizes(sample.mask))
        class_pixels += np.bincount(sample.mask.ravel(), minlength=256)[:256]
    class_pixels[255] = 0  # ignored pixels are neither background nor a class
    if not sizes:
        raise InputError(dataset.config.root, "none of the photos could be read to fingerprint")
    n = dataset.taxonomy.num_classes
    return summarise(sizes, per_photo, class_pixels[:n], len(records))
