"""Torch datasets over dermaseg datasets: load (and keep) photos, augment, batch, shard."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import DistributedSampler

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.records import Record
from dermaseg.errors import InputError
from dermaseg.train.planning_graph import to_working_size


@dataclass(frozen=True)
class LoadedPhoto:
    """A photo and its class-id mask, resized so the longer side is the working size."""

    image: np.ndarray
    mask: np.ndarray
    record: Record


def resize_photo(image: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Photo and mask with the longer side resized to `size`, exactly as the exported model
    resizes a photo (`planning_graph.to_working_size`: antialiased bilinear, rounded to uint8);
    nearest neighbour for the mask."""
    image = image if image.flags.writeable else image.copy()  # torch wants writable arrays
    pixels = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        resized = to_working_size(pixels, size)[0].permute(1, 2, 0).to(torch.uint8).numpy()
    height, width = resized.shape[:2]
    if mask.shape == (height, width):
        return np.ascontiguousarray(resized), mask
    return (
        np.ascontiguousarray(resized),
        cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST),
    )


def load_photos(
    dataset: Dataset, records: list[Record], size: int, keep: bool = True
) -> tuple[list[LoadedPhoto | Record], list[InputError]]:
    """Read every record once; unreadable ones are returned as errors, not raised.

    With `keep`, the resized photos are returned (kept in memory); otherwise the readable
    records, to be loaded again whenever they are used.
    """
    photos: list[LoadedPhoto | Record] = []
    errors = []
    for record in records:
        try:
            sample = dataset.load(record)
        except InputError as exc:
            errors.append(exc)
            continue
        if keep:
            image, mask = resize_photo(sample.image, sample.mask, size)
            photos.append(LoadedPhoto(image, mask, record))
        else:
            photos.append(record)
    return photos, errors


class SegmentationData(torch.utils.data.Dataset):
    """(uint8 image [3, S, S], int64 mask [S, S]) pairs after the albumentations pipeline.

    Items are kept photos, or records read from disk on every use (set `dataset` and `size`).
    """

    def __init__(
        self,
        photos: list[LoadedPhoto | Record],
        pipeline: A.Compose,
        dataset: Dataset | None = None,
        size: int = 0,
    ) -> None:
        self.photos = photos
        self.pipeline = pipeline
        self.dataset = dataset
        self.size = size

    def __len__(self) -> int:
        return len(self.photos)

    def photo(self, index: int) -> LoadedPhoto:
        item = self.photos[index]
        if isinstance(item, LoadedPhoto):
            return item
        sample = self.dataset.load(item)
        return LoadedPhoto(*resize_photo(sample.image, sample.mask, self.size), item)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        photo = self.photo(index)
        out = self.pipeline(image=photo.image, mask=photo.mask)
        image = torch.from_numpy(np.ascontiguousarray(out["image"])).permute(2, 0, 1)
        return image, torch.from_numpy(np.ascontiguousarray(out["mask"])).long()


def seed_worker(worker_id: int) -> None:
    """Give each DataLoader worker its own augmentation stream, derived from torch's seed."""
    info = torch.utils.data.get_worker_info()
    if info is not None:
        info.dataset.pipeline.set_random_seed(torch.initial_seed() % 2**32)


class ResumableSampler(DistributedSampler):
    """A DistributedSampler (shuffled by seed and epoch) that can skip the first batches.

    After a resume mid-epoch, `skip` drops the samples this rank had already seen, so the
    epoch finishes with the same order it started with.
    """

    def __init__(
        self, data: torch.utils.data.Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int
    ) -> None:
        super().__init__(
            data, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=False
        )
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.skip :])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.skip)
