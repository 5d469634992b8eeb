"""What a plan is made from, and what travels with it to the writers.

    read_photo ─▶ calibrate ─▶ segment ─▶ Analysis ─▶ planner.plan_from_mask ─▶ procedure ─▶ review
                                    (analysed pixels)          │ (the one change of frame)
                                                               ▼
                                      MadePlan(plan in photo pixels, analysis, regions) ─▶ writers

A large JPEG is decoded at 1/r of its size (r = `photo.info.analysis_scale`, a power of two):
an `Analysis` and the regions are in those analysed pixels, the `Plan` in the photo's own
pixels. The writers apply r at the edge (`outputs.write_outputs`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dermaseg.infer.geometry import Region
from dermaseg.infer.inputs import Photo
from dermaseg.infer.schema import Calibration, Plan, SourceInfo


@dataclass(frozen=True)
class Analysis:
    """One photo as analysed: `photo.rgb`, `mask` (class ids), `confidence` (top probability
    x 255; None for a mask drawn by a person), `disagreement` (TTA) and `calibration` all
    in the pixels of `photo.rgb`; `photo.info` is the record of the full-size photo."""

    photo: Photo
    mask: np.ndarray
    confidence: np.ndarray | None
    calibration: Calibration
    source: SourceInfo
    disagreement: np.ndarray | None = None

    @property
    def rgb(self) -> np.ndarray:
        return self.photo.rgb

    @property
    def scale(self) -> int:
        """The photo's own pixels per analysed pixel, along each side."""
        return self.photo.info.analysis_scale


@dataclass(frozen=True)
class MadePlan:
    """A finished plan and what it was made from: `plan` in the full-size photo's pixels (as
    written), `analysis` and `regions` in the analysed pixels; patch `i` is `regions[i - 1]`."""

    plan: Plan
    analysis: Analysis
    regions: tuple[Region, ...]


def treated_pixels(
    plan: Plan, regions: tuple[Region, ...], shape: tuple[int, ...], class_ids
) -> np.ndarray:
    """Bool [H, W] (analysed pixels) of the plan's treated patches of `class_ids`, from the
    regions they were made from."""
    treated = np.zeros(shape[:2], bool)
    ids = set(class_ids)
    for patch, region in zip(plan.patches, regions, strict=True):
        if patch.treatable and region.class_id in ids:
            x, y, w, h = region.bbox
            treated[y : y + h, x : x + w] |= region.pixels
    return treated
