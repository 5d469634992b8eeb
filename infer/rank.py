"""Order unlabelled photos for labelling (active learning): most uncertain first.

Uncertainty is the mean per-pixel entropy of the model's class probabilities (a mean, not a sum,
so large photos are not favoured). The planning contract gives only the top-class probability p
per pixel (`confidence`), not the whole distribution, so the entropy used is that of the most
spread distribution with that top class: p on the top class and (1 - p) shared evenly by the
other C - 1 classes, H = -p ln p - (1 - p) ln((1 - p) / (C - 1)), divided by ln C to lie in
0..1. For a two-class model this is the exact entropy; for more classes it is an upper bound.
The mean of 1 - p (least confidence) is reported beside it.

Pre-annotations: the model's patches (components at least the plan's minimum patch size;
specks left out) of every photo in one COCO instances file (compressed RLE, as `dermaseg plan`
writes them), with image file names relative to the folder, so CVAT or Label Studio can import
it next to the photos.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.errors import DermasegError
from dermaseg.infer.batch import ANALYSIS_MIN_PX, model_source
from dermaseg.infer.calibration import uncalibrated
from dermaseg.infer.formats import to_coco
from dermaseg.infer.inputs import read_photo
from dermaseg.infer.planner import PlanSettings, plan_from_mask
from dermaseg.infer.session import PlanningModel

UNCERTAIN = 0.7  # a pixel whose top-class probability is below this counts as uncertain


def entropy_table(num_classes: int) -> np.ndarray:
    """Normalised entropy (0..1) for each uint8 confidence value (top probability x 255)."""
    c = max(2, int(num_classes))
    p = np.clip(np.arange(256, dtype=np.float64) / 255.0, 1.0 / c, 1.0)
    rest = 1.0 - p
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -p * np.log(p) - np.where(rest > 0, rest * np.log(rest / (c - 1)), 0.0)
    return h / math.log(c)


@dataclass(frozen=True)
class Ranked:
    photo: Path
    name: str  # relative to the folder
    mean_entropy: float
    mean_least_confidence: float
    uncertain_share: float
    width: int
    height: int
    patches: int
    coco: dict


def score_photo(model: PlanningModel, path: Path, name: str) -> Ranked:
    """One photo's uncertainty and pre-annotations."""
    working = model.working_size
    photo = read_photo(path, min_long_side=max(ANALYSIS_MIN_PX, 2 * working) if working else 0)
    result = model.run(photo.rgb, 0.0)
    confidence = result.confidence
    table = entropy_table(model.taxonomy.num_classes)
    found = plan_from_mask(
        photo.rgb,
        result.mask,
        confidence,
        photo=photo.info.model_copy(update={"name": name}),
        source=model_source(model),
        calibration=uncalibrated(),
        taxonomy=model.taxonomy,
        settings=PlanSettings(tone=False, treat_classes=tuple(model.taxonomy.names[1:])),
    )
    return Ranked(
        photo=path,
        name=name,
        mean_entropy=float(table[confidence].mean()),
        mean_least_confidence=float(1.0 - confidence.mean() / 255.0),
        uncertain_share=float(np.count_nonzero(confidence < round(255 * UNCERTAIN)))
        / confidence.size,
        width=photo.info.width,
        height=photo.info.height,
        patches=len(found.plan.patches),
        coco=to_coco(found.plan, found.regions, model.taxonomy),
    )


def rank_photos(
    model: PlanningModel,
    folder: Path,
    photos: list[Path],
    progress: Callable[[int], None] | None = None,
) -> tuple[list[Ranked], list[tuple[Path, str]]]:
    """Every photo scored (a photo that fails is listed with its error), most uncertain first."""
    ranked, failed = [], []
    for path in photos:
        try:
            name = path.relative_to(folder).as_posix() if folder.is_dir() else path.name
            ranked.append(score_photo(model, path, name))
        except DermasegError as exc:
            failed.append((path, str(exc)))
        if progress is not None:
            progress(1)
    ranked.sort(key=lambda r: (-r.mean_entropy, r.name))
    return ranked, failed


def ranking_csv(ranked: list[Ranked]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "rank",
            "photo",
            "mean_entropy",
            "mean_least_confidence",
            "uncertain_share",
            "patches",
            "width",
            "height",
        ]
    )
    for i, r in enumerate(ranked, start=1):
        writer.writerow(
            [
                i,
                r.name,
                f"{r.mean_entropy:.5f}",
                f"{r.mean_least_confidence:.5f}",
                f"{r.uncertain_share:.5f}",
                r.patches,
                r.width,
                r.height,
            ]
        )
    return buffer.getvalue()


def merged_coco(ranked: list[Ranked], model_name: str) -> dict:
    """One COCO file with every photo (ids in rank order) and its patches."""
    images, annotations, categories = [], [], []
    for image_id, r in enumerate(ranked, start=1):
        categories = r.coco["categories"]
        for image in r.coco["images"]:
            images.append({**image, "id": image_id})
        for annotation in r.coco["annotations"]:
            annotations.append({**annotation, "id": len(annotations) + 1, "image_id": image_id})
    return {
        "info": {
            "description": "dermaseg pre-annotations, most uncertain photo first",
            "contributor": f"dermaseg (model {model_name})",
        },
        "licenses": [],
        "images": images,
        "categories": categories,
        "annotations": annotations,
    }
