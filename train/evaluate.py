"""Evaluation of a model over a dataset split: loss and the metrics of `SegmentationMetrics`."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dermaseg.errors import DermasegError
from dermaseg.train.metrics import SegmentationMetrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    device: torch.device,
    class_names: list[str],
    loss_fn: nn.Module | None = None,
    amp_dtype: torch.dtype | None = None,
) -> dict:
    """Run the model over `loader`; returns metrics plus `loss` when a loss is given."""
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
        metrics.update(logits.argmax(dim=1), masks)
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
        raise DermasegError(f"{data}: no photos in split {split!r}")
    return dataset, records


def evaluate_checkpoint(checkpoint: Path, data: Path, split: str) -> dict:
    """Metrics of a checkpoint on a dataset split, at the checkpoint's working size."""
    from dermaseg.train.augment import eval_pipeline
    from dermaseg.train.data import SegmentationData, load_photos

    model, meta = load_model(checkpoint)
    names = [c["name"] for c in meta["taxonomy"]]
    dataset, records = _split_to_score(data, split, names)
    size = int(meta["working_size"])
    photos, errors = load_photos(dataset, records, size)
    if not photos:
        raise DermasegError(f"{data}: none of the {len(records)} photos could be read")
    loader = torch.utils.data.DataLoader(
        SegmentationData(photos, eval_pipeline(size)), batch_size=4
    )
    metrics = evaluate(model, loader, torch.device("cpu"), names)
    metrics.update(
        photos=len(photos), skipped=[str(e) for e in errors], split=split, working_size=size
    )
    return metrics


def evaluate_onnx(model_path: Path, data: Path, split: str) -> dict:
    """Metrics of an exported planning model on a dataset split, at each photo's full size."""
    from dermaseg.errors import InputError
    from dermaseg.infer.session import PlanningModel

    model = PlanningModel(model_path)
    names = model.taxonomy.names
    dataset, records = _split_to_score(data, split, names)
    metrics = SegmentationMetrics(len(names), names)
    skipped = []
    for record in records:
        try:
            sample = dataset.load(record)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        predicted = model.run(sample.image).mask
        metrics.update(
            torch.from_numpy(predicted)[None].long(), torch.from_numpy(sample.mask)[None].long()
        )
    if len(skipped) == len(records):
        raise DermasegError(f"{data}: none of the {len(records)} photos could be read")
    result = metrics.compute()
    result.update(
        photos=len(records) - len(skipped),
        skipped=skipped,
        split=split,
        working_size=model.working_size,
    )
    return result
