"""Evaluation of a model over a dataset split: loss and the metrics of `SegmentationMetrics`."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dermaseg.errors import DermasegError, shown
from dermaseg.train.metrics import SegmentationMetrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    class_names: list[str],
    loss_fn: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
    on_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> dict:
    """Run the model over `loader`; returns metrics plus `loss` when a loss is given.
    `on_batch(images, masks, predictions)` sees each batch (the trainer keeps overlays)."""
    was_training = model.training
    model.eval()
    metrics = SegmentationMetrics(len(class_names), class_names)
    loss_sum, batches = 0.0, 0
    for images, masks in loader:
        images, masks = images.to(device), masks.to(device)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(images)
        if loss_fn is not None:
            loss_sum += float(loss_fn(logits.float(), masks))
            batches += 1
        predictions = logits.argmax(dim=1)
        metrics.update(predictions, masks)
        if on_batch is not None:
            on_batch(images, masks, predictions)
    model.train(was_training)
    result = metrics.compute()
    if loss_fn is not None:
        result["loss"] = loss_sum / max(batches, 1)
    return result


def load_model(checkpoint: Path) -> tuple[nn.Module, dict]:
    """A SegmentationNet rebuilt from a checkpoint's sidecar and weights, in eval mode."""
    from dermaseg.train.checkpoint import load_checkpoint
    from dermaseg.train.config import ModelConfig
    from dermaseg.train.model import build_model

    loaded = load_checkpoint(checkpoint)
    model_config = ModelConfig(**{**loaded.meta["config"]["model"], "encoder_weights": None})
    model = build_model(model_config, len(loaded.meta["taxonomy"]))
    model.mean.copy_(torch.tensor(loaded.meta["normalisation"]["mean"]).view(1, 3, 1, 1))
    model.std.copy_(torch.tensor(loaded.meta["normalisation"]["std"]).view(1, 3, 1, 1))
    model.load_state_dict(loaded.model_state)
    return model.eval(), loaded.meta


def _split_to_score(data: Path, split: str, names: list[str]):
    """The dataset and its records in `split` (or all), checked against the model's classes."""
    from dermaseg.datasets.dataset import Dataset

    dataset = Dataset.open(data)
    if dataset.taxonomy.names != names:
        raise DermasegError(
            f"{data}: classes {dataset.taxonomy.names} differ from the model's {names}"
        )
    records = dataset.records if split == "all" else dataset.split_records(split)
    if not records:
        raise DermasegError(f"{shown(data)}: no photos in split {split!r}")
    return dataset, records


def skin_tone_of(image: np.ndarray, truth: np.ndarray) -> dict:
    """ITA° and its category of a photo's pixels outside every labelled class (the photo's
    unaffected skin where it shows skin), sampled to about 256 px on the longer side."""
    from dermaseg.infer.tone import skin_tone

    stride = max(1, max(image.shape[:2]) // 256)
    tone = skin_tone(image, truth != 0, np.zeros(truth.shape, bool), stride=stride)
    if tone is None:
        return {"ita_deg": None, "ita_category": "unknown"}
    return {"ita_deg": tone.ita_deg, "ita_category": tone.ita_category}


def per_image_rows(metrics: SegmentationMetrics, photos: list[dict], fixed: list[str]) -> list:
    """One row per photo, worst first: its mean per-image Dice over the fixed class set, its
    skin tone, and per class Dice, areas, area error and hallucinated area."""
    rows = []
    for photo, scores in zip(photos, metrics.per_image(), strict=True):
        per_class = scores["per_class"]
        dice = [per_class[c]["dice"] for c in fixed]
        rows.append(
            {
                **photo,
                "fixed_dice": float(np.mean(dice)) if dice else math.nan,
                "pixels": scores["pixels"],
                "boundary_tolerance_px": scores["tolerance_px"],
                "per_class": {k: v for k, v in per_class.items() if k != metrics.class_names[0]},
            }
        )
    return sorted(rows, key=lambda r: (r["fixed_dice"], r["photo"]))


def by_tone_group(rows: list[dict], fixed: list[str]) -> dict:
    """Mean per-image Dice (fixed class set and per class) by ITA° skin-tone category."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["ita_category"], []).append(row)
    return {
        name: {
            "photos": len(members),
            "mean_fixed_dice": float(np.mean([r["fixed_dice"] for r in members])),
            **{
                f"dice_{c}": float(np.mean([r["per_class"][c]["dice"] for r in members]))
                for c in fixed
            },
        }
        for name, members in sorted(groups.items())
    }


def _finish(metrics: SegmentationMetrics, photos: list[dict], extra: dict) -> dict:
    result = metrics.compute()
    rows = per_image_rows(metrics, photos, result["fixed_classes"])
    result.update(extra)
    result["per_image"] = rows
    result["by_skin_tone"] = by_tone_group(rows, result["fixed_classes"])
    return result


def evaluate_checkpoint(checkpoint: Path, data: Path, split: str) -> dict:
    """Metrics of a checkpoint on a dataset split, at the checkpoint's working size (the
    training-time preprocessing: `data.resize_photo`, padded to a multiple of 32 as the
    exported graph pads)."""
    from dermaseg.train.data import load_photos
    from dermaseg.train.planning_graph import pass_logits

    model, meta = load_model(checkpoint)
    names = [c["name"] for c in meta["taxonomy"]]
    dataset, records = _split_to_score(data, split, names)
    size = int(meta["working_size"])
    photos, errors = load_photos(dataset, records, size)
    if not photos:
        raise DermasegError(f"{shown(data)}: none of the {len(records)} photos could be read")
    metrics = SegmentationMetrics(len(names), names, keep_images=True)
    described = []
    with torch.no_grad():
        for photo in photos:
            pixels = torch.from_numpy(photo.image).permute(2, 0, 1)[None].float()
            predicted = pass_logits(model, pixels, None)[0].argmax(dim=1)
            metrics.update(predicted, torch.from_numpy(photo.mask)[None].long())
            described.append({"photo": photo.record.id, **skin_tone_of(photo.image, photo.mask)})
    extra = {
        "photos": len(photos),
        "skipped": [str(e) for e in errors],
        "split": split,
        "working_size": size,
        "scored_at": "working size",
    }
    return _finish(metrics, described, extra)


def evaluate_onnx(model_path: Path, data: Path, split: str) -> dict:
    """Metrics of an exported planning model on a dataset split, at each photo's full size,
    after the model's learned post-processing (`dermaseg.postprocess`) when it has one."""
    from dermaseg.errors import InputError
    from dermaseg.infer.postprocess import apply_postprocess, read_postprocess
    from dermaseg.infer.session import PlanningModel

    model = PlanningModel(model_path)
    names = model.taxonomy.names
    post, invalid = read_postprocess(model.metadata, model.taxonomy)
    if invalid is not None:
        raise DermasegError(f"{shown(model_path)}: {invalid.text}")
    dataset, records = _split_to_score(data, split, names)
    metrics = SegmentationMetrics(len(names), names, keep_images=True)
    skipped, described = [], []
    for record in records:
        try:
            sample = dataset.load(record)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        predicted = apply_postprocess(model.run(sample.image).mask, post)
        metrics.update(
            torch.from_numpy(predicted)[None].long(), torch.from_numpy(sample.mask)[None].long()
        )
        described.append({"photo": record.id, **skin_tone_of(sample.image, sample.mask)})
    if len(skipped) == len(records):
        raise DermasegError(f"{shown(data)}: none of the {len(records)} photos could be read")
    extra = {
        "photos": len(records) - len(skipped),
        "skipped": skipped,
        "split": split,
        "working_size": model.working_size,
        "scored_at": "full size",
        "precision": model.precision,
        "postprocess": None
        if post.empty
        else {
            "min_component_fraction": {names[c]: v for c, v in post.min_fraction.items()},
            "largest_only": [names[c] for c in sorted(post.largest_only)],
            "fill_holes": post.fill_holes,
        },
    }
    return _finish(metrics, described, extra)


def per_image_csv(rows: list[dict]) -> str:
    """The per-image rows as CSV (worst first), one column per class and figure."""
    import csv
    import io

    classes = list(rows[0]["per_class"]) if rows else []
    figures = ("dice", "true_px", "pred_px", "area_error_pct", "hallucinated_area_pct")
    header = ["photo", "fixed_dice", "ita_category", "ita_deg", "pixels"]
    header += [f"{f}_{c}" for c in classes for f in figures]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values = [
            row["photo"],
            row["fixed_dice"],
            row["ita_category"],
            row["ita_deg"],
            row["pixels"],
        ]
        values += [row["per_class"][c][f] for c in classes for f in figures]
        writer.writerow(["" if v is None else v for v in values])
    return out.getvalue()
