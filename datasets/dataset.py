"""A dataset on disk: its config, taxonomy, records, splits, and sample loading."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from dermaseg.datasets.config import DatasetConfig, load_dataset_config
from dermaseg.datasets.images import decode_image, read_file
from dermaseg.datasets.maskfolder import MaskFolderReader
from dermaseg.datasets.records import Problem, Reader, Record, Sample
from dermaseg.datasets.splits import SplitAssignment, assign_splits
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.fileio import photo_sha256


def make_reader(config: DatasetConfig, taxonomy: Taxonomy) -> Reader:
    """The reader for the config's format."""
    if config.format == "coco":
        from dermaseg.datasets.coco import CocoReader

        return CocoReader(config, taxonomy)
    if config.format == "labelme":
        from dermaseg.datasets.labelme import LabelMeReader

        return LabelMeReader(config, taxonomy)
    return MaskFolderReader(config, taxonomy)


class Dataset:
    """Labelled photos read through the reader of their format."""

    def __init__(self, config: DatasetConfig) -> None:
        self.config = config
        self.taxonomy: Taxonomy = config.taxonomy()
        self.reader = make_reader(config, self.taxonomy)
        self.records, self.listing_problems = self.reader.list_records()

    @classmethod
    def open(cls, spec: str | Path) -> Dataset:
        """Open a dataset YAML or folder; raises InputError with a one-line message."""
        return cls(load_dataset_config(spec))

    def load(self, record: Record, data: bytes | None = None) -> Sample:
        """Load one record's photo and class-id mask; raises InputError naming the bad file."""
        raw = read_file(record.image_path) if data is None else data
        image = decode_image(raw, record.image_path, max_pixels=self.config.max_pixels).pixels
        mask = self.reader.read_mask(record, image.shape[0], image.shape[1])
        return Sample(image=image, mask=mask, record=record, split=self.split_of(record))

    def assign_splits(self, digests: dict[str, str] | None = None) -> SplitAssignment:
        """Split the records; `digests` (id -> sha256) are computed when not given."""
        if digests is None:
            digests = {}
            for record in self.records:
                try:
                    digests[record.id] = photo_sha256(record.image_path)
                except OSError:
                    continue  # unreadable photos are reported when loaded
        assignment = assign_splits(self.records, self.config.split, self.config.root, digests)
        self.__dict__["splits"] = assignment
        return assignment

    @cached_property
    def splits(self) -> SplitAssignment:
        return self.assign_splits()

    def split_of(self, record: Record) -> str:
        return self.splits.split_of.get(record.id, "")

    def split_records(self, split: str) -> list[Record]:
        wanted = set(self.splits.ids(split))
        return [r for r in self.records if r.id in wanted]

    @property
    def problems(self) -> list[Problem]:
        return self.listing_problems + self.splits.problems
