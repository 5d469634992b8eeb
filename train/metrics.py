"""Segmentation metrics accumulated batch by batch over a set: Dice, IoU, boundary F1, area error.

All values are aggregated over the whole set from summed counts (not averaged per batch), so the
result does not depend on how the set was split into batches. Pixels whose target is the ignore
index (padding) count nowhere. A value that is undefined (a class absent from both prediction
and truth) is NaN and is left out of the means.
"""

from __future__ import annotations

import math

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from dermaseg.train.losses import IGNORE_INDEX

FLOAT_KEYS = ("dice", "iou", "boundary_f1", "area_error_pct")


def boundary_mask(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Edge pixels of a label map [..., H, W]: those with another class in their 3x3 neighbourhood.

    Ignored pixels are never boundary and make no boundary for their neighbours; neither does the
    image edge. Every class gets its own inner edge, so two touching patches both get one.
    """
    grid = labels.reshape(-1, 1, *labels.shape[-2:])
    valid = grid != ignore_index
    values = grid.float()
    highest = F.max_pool2d(values.masked_fill(~valid, -math.inf), 3, stride=1, padding=1)
    lowest = -F.max_pool2d((-values).masked_fill(~valid, -math.inf), 3, stride=1, padding=1)
    edge = valid & ((highest != values) | (lowest != values))
    return edge.reshape(labels.shape)


def _per_class(labels: torch.Tensor, where: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[N, C, H, W] bool: pixels of `labels` [N, H, W] that are class c and inside `where`."""
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, 1, 1)
    return (labels.unsqueeze(1) == classes) & where.unsqueeze(1)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    """Grow a bool [N, C, H, W] mask by `radius` pixels with a square (2r+1)x(2r+1) window."""
    if radius == 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius) > 0


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    """Harmonic mean of precision and recall; 0 where both are 0."""
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-12), 0.0)


def _nanmean(values: torch.Tensor) -> float:
    """Mean of the non-NaN values; NaN if there are none."""
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else math.nan


class SegmentationMetrics:
    """Streaming accumulator: `update()` per batch of label maps, `compute()` at the end.

    Per class: `dice` and `iou` from TP/FP/FN summed over the set; `boundary_f1` at
    `boundary_tolerance_px` (see `boundary_mask`; a predicted edge pixel is correct when a true
    edge pixel of the same class lies within the tolerance in x and y, and recall is symmetric;
    NaN when the class has no edge in either map, 0 when it has edge in only one);
    `area_error_pct`, the mean over photos holding the class of |pred - true| / true area x 100
    (NaN if no photo holds it); `support_px`, the true pixel count. Summary: `mean_dice`,
    `mean_iou`, `mean_boundary_f1` over the non-background classes (class 0), ignoring NaN, and
    `pixel_accuracy`.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: list[str],
        boundary_tolerance_px: int = 2,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if boundary_tolerance_px < 0:
            raise ValueError(f"boundary_tolerance_px must be >= 0, got {boundary_tolerance_px}")
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.tolerance = boundary_tolerance_px
        self.ignore_index = ignore_index
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._stats = torch.zeros(3, self.num_classes, dtype=torch.long)  # rows: TP, FP, FN
        # rows: predicted edge px, of which matched; true edge px, of which matched
        self._edges = torch.zeros(4, self.num_classes, dtype=torch.long)
        self._area_error_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self._area_photos = torch.zeros(self.num_classes, dtype=torch.long)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: predicted and true class ids, both [N, H, W] on the same device."""
        if pred.shape != target.shape or target.dim() != 3:
            raise ValueError(
                f"pred and target must both be [N, H, W]; got {list(pred.shape)} "
                f"and {list(target.shape)}"
            )
        target = target.long()
        pred = pred.to(target.device, torch.long).masked_fill(
            target == self.ignore_index, self.ignore_index
        )
        tp, fp, fn, _ = smp.metrics.get_stats(
            pred, target, "multiclass", ignore_index=self.ignore_index, num_classes=self.num_classes
        )
        self._stats += torch.stack([tp, fp, fn]).sum(1)
        self._add_area_errors(pred_area=tp + fp, true_area=tp + fn)
        self._edges += self._edge_counts(pred, target).cpu()

    def _add_area_errors(self, pred_area: torch.Tensor, true_area: torch.Tensor) -> None:
        """Accumulate per-photo area errors from [N, C] pixel areas."""
        present = true_area > 0
        error = (pred_area - true_area).abs().double() / true_area.clamp_min(1) * 100
        self._area_error_sum += torch.where(present, error, 0.0).sum(0)
        self._area_photos += present.sum(0)

    def _edge_counts(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """[4, C]: predicted edge px, matched ones; true edge px, matched ones."""
        pred_edge = _per_class(pred, boundary_mask(pred, self.ignore_index), self.num_classes)
        true_edge = _per_class(target, boundary_mask(target, self.ignore_index), self.num_classes)
        pred_hit = pred_edge & _dilate(true_edge, self.tolerance)
        true_hit = true_edge & _dilate(pred_edge, self.tolerance)
        return torch.stack([m.sum((0, 2, 3)) for m in (pred_edge, pred_hit, true_edge, true_hit)])

    def _boundary_f1(self) -> torch.Tensor:
        pred_px, pred_hit, true_px, true_hit = self._edges.double()
        precision = torch.where(pred_px > 0, pred_hit / pred_px.clamp_min(1), 0.0)
        recall = torch.where(true_px > 0, true_hit / true_px.clamp_min(1), 0.0)
        f1 = _f1(precision, recall)
        return torch.where((pred_px + true_px) > 0, f1, math.nan)

    def compute(self) -> dict:
        """{"per_class": {name: {dice, iou, boundary_f1, area_error_pct, support_px}}, means...}."""
        tp, fp, fn = self._stats.double()
        tn = torch.zeros_like(tp)  # unused by Dice and IoU
        dice = smp.metrics.f1_score(tp, fp, fn, tn, zero_division=math.nan)
        iou = smp.metrics.iou_score(tp, fp, fn, tn, zero_division=math.nan)
        boundary_f1 = self._boundary_f1()
        area_error = torch.where(
            self._area_photos > 0, self._area_error_sum / self._area_photos.clamp_min(1), math.nan
        )
        columns = (dice, iou, boundary_f1, area_error)
        per_class = {
            name: {
                **{key: float(col[c]) for key, col in zip(FLOAT_KEYS, columns, strict=True)},
                "support_px": int(tp[c] + fn[c]),
            }
            for c, name in enumerate(self.class_names)
        }
        labelled = int((tp + fn).sum())
        return {
            "per_class": per_class,
            "mean_dice": _nanmean(dice[1:]),
            "mean_iou": _nanmean(iou[1:]),
            "mean_boundary_f1": _nanmean(boundary_f1[1:]),
            "pixel_accuracy": int(tp.sum()) / labelled if labelled else math.nan,
        }


def format_table(metrics: dict) -> list[dict]:
    """One row per class ({"class": name, dice, iou, ...}) from `SegmentationMetrics.compute()`."""
    return [{"class": name, **values} for name, values in metrics["per_class"].items()]
