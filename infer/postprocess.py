"""The model's learned post-processing (metadata `dermaseg.postprocess`), applied to its mask
before anything is planned.

The training recipe may store, fitted on its validation split:
    {"min_component_fraction": 0.0005 | {"vitiligo": 0.0005, ...}, "largest_only": ["lesion"],
     "fill_holes": true}
Components of a class smaller than that fraction of the photo become background; of a class in
`largest_only` only its largest component is kept (nnU-Net's rule for one-object-per-photo
data, chosen only when it raised that class's Dice on the validation split); with `fill_holes`
background holes enclosed by one class become that class. The reader is
defensive: a model without the key is left as it is, and a malformed value is ignored with the
`postprocess-invalid` warning (the raw mask is planned).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer import warning_codes as codes
from dermaseg.infer.contract import KEY_POSTPROCESS
from dermaseg.infer.schema import PlanWarning

FRACTIONS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # tried per class by `dermaseg export`


@dataclass(frozen=True)
class PostProcess:
    min_fraction: dict[int, float] = field(default_factory=dict)  # class id -> share of photo
    fill_holes: bool = False
    largest_only: frozenset[int] = frozenset()  # class ids: keep the largest component only

    @property
    def empty(self) -> bool:
        return (
            not self.fill_holes
            and not self.largest_only
            and not any(v > 0 for v in self.min_fraction.values())
        )


def read_postprocess(
    metadata: dict[str, str], taxonomy: Taxonomy
) -> tuple[PostProcess, PlanWarning | None]:
    """The post-processing a model's metadata asks for, and a warning when it is malformed."""
    text = metadata.get(KEY_POSTPROCESS)
    if not text:
        return PostProcess(), None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        fraction = data.get("min_component_fraction", 0.0)
        ids = range(1, taxonomy.num_classes)
        if isinstance(fraction, dict):
            unknown = set(fraction) - set(taxonomy.names)
            if unknown:
                raise ValueError(f"unknown class {sorted(unknown)[0]!r}")
            per_class = {taxonomy.names.index(k): float(v) for k, v in fraction.items()}
        else:
            per_class = {i: float(fraction) for i in ids}
        if any(not (math.isfinite(v) and 0 <= v < 1) for v in per_class.values()):
            raise ValueError("min_component_fraction must be in [0, 1)")
        fill = data.get("fill_holes", False)
        if not isinstance(fill, bool):
            raise ValueError("fill_holes must be true or false")
        largest = data.get("largest_only", [])
        if not isinstance(largest, list) or not set(largest) <= set(taxonomy.names[1:]):
            raise ValueError("largest_only must be a list of class names")
        largest_ids = frozenset(taxonomy.names.index(name) for name in largest)
        return PostProcess(per_class, fill, largest_ids), None
    except (ValueError, TypeError) as exc:
        return PostProcess(), codes.warning("postprocess-invalid", reason=str(exc)[:120])


def apply_postprocess(mask: np.ndarray, post: PostProcess) -> np.ndarray:
    """The mask with small components removed, only the largest kept where asked, and holes
    filled (a new array when changed)."""
    if post.empty:
        return mask
    out = mask.copy()
    total = mask.shape[0] * mask.shape[1]
    for class_id, fraction in post.min_fraction.items():
        if fraction <= 0:
            continue
        _, labels, stats, _ = cv2.connectedComponentsWithStats(
            (out == class_id).view(np.uint8), connectivity=8
        )
        small = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < fraction * total) + 1
        if len(small):
            out[np.isin(labels, small)] = 0
    for class_id in post.largest_only:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (out == class_id).view(np.uint8), connectivity=8
        )
        if count > 2:
            largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
            out[(labels > 0) & (labels != largest)] = 0
    if post.fill_holes:
        for class_id in [int(c) for c in np.unique(out) if c != 0]:
            out[_holes(out == class_id) & (out == 0)] = class_id
    return out


def _holes(binary: np.ndarray) -> np.ndarray:
    """Pixels not in `binary` and not 4-connected to the image border through non-`binary`."""
    outside = (~binary).view(np.uint8)
    _, labels = cv2.connectedComponents(outside, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    return (labels > 0) & ~np.isin(labels, border)
