"""Segmentation metrics accumulated batch by batch over a set: Dice, IoU, boundary F1, area error.

All values are aggregated over the whole set from summed counts (not averaged per batch), so the
result does not depend on how the set was split into batches. Pixels whose target is the ignore
index (padding) count nowhere. A value that is undefined (a class absent from both prediction
and truth) is NaN and is left out of the means.

Definitions used everywhere (training, `dermaseg eval`, the int8 guard, benchmarks):
- boundary F1 tolerance: `BOUNDARY_TOLERANCE` (0.5 %) of the photo's diagonal, in the pixels of
  the map being scored (`boundary_tolerance_px`), so it means the same at the working size and
  at full size (2 px at 384x288, 25 px at 4032x3024).
- `area_error_pct`: over photos that hold the class, mean |predicted - true| / true area x 100.
- `hallucinated_area_pct`: over photos that do NOT hold the class, mean predicted area of the
  class as % of the photo: over-treatment, which `area_error_pct` cannot see.
- the fixed class set: the non-background classes with support in the truth of the set scored
  (`fixed_classes`); `fixed_mean_dice` averages Dice over it, so best-checkpoint selection and
  the int8 guard do not change meaning when stray predictions of an absent class come and go.
- per-image Dice (`per_image_dice`): a class absent from both maps scores 1 (a correct
  "none"), predicted but absent scores 0.
"""

from __future__ import annotations

import math

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from dermaseg.train.losses import IGNORE_INDEX

FLOAT_KEYS = ("dice", "iou", "boundary_f1", "area_error_pct", "hallucinated_area_pct")
BOUNDARY_TOLERANCE = 0.005  # boundary F1 tolerance, as a fraction of the photo's diagonal


def boundary_tolerance_px(height: int, width: int, fraction: float = BOUNDARY_TOLERANCE) -> int:
    """The boundary F1 tolerance in pixels for a photo (or label map) of height x width: at
    least 1 px."""
    return max(1, round(fraction * math.hypot(height, width)))


def fixed_classes(metrics: dict) -> list[str]:
    """The non-background classes with support in the truth (from `compute()`'s per_class)."""
    names = list(metrics["per_class"])[1:]
    return [n for n in names if metrics["per_class"][n]["support_px"] > 0]


def fixed_class_mean(metrics: dict, key: str = "dice") -> float:
    """Mean of `key` over `fixed_classes(metrics)`; over all non-background classes (ignoring
    NaN) when no class has support. The trainer's best-checkpoint metric is
    `fixed_class_mean(metrics)` (also in `compute()` as `fixed_mean_dice`)."""
    names = fixed_classes(metrics) or list(metrics["per_class"])[1:]
    values = [metrics["per_class"][n][key] for n in names]
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else math.nan


def per_image_dice(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Dice per image and class from [N, C] counts; 1 where a class is in neither map."""
    denominator = (2 * tp + fp + fn).double()
    return torch.where(denominator > 0, 2 * tp.double() / denominator.clamp_min(1), 1.0)


def boundary_mask(labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Edge pixels of a label map [..., H, W]: those with another class in their 3x3 neighbourhood.

    The one definition of a patch boundary: the training metrics, the exported graph's
    `boundary` output (ONNX contract, `contract.BOUNDARY_DEFINITION`) and the export's check of
    it all use this function. Ignored pixels are never boundary and make no boundary for their
    neighbours; neither does the image edge. Every class gets its own inner edge, so two
    touching patches both get one.
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
    grown = F.max_pool2d(mask.float(), (2 * radius + 1, 1), stride=1, padding=(radius, 0))
    return F.max_pool2d(grown, (1, 2 * radius + 1), stride=1, padding=(0, radius)) > 0


def _f1(precision: torch.Tensor, recall: torch.Tensor) -> torch.Tensor:
    """Harmonic mean of precision and recall; 0 where both are 0."""
    total = precision + recall
    return torch.where(total > 0, 2 * precision * recall / total.clamp_min(1e-12), 0.0)


def _boundary_f1(edges: torch.Tensor) -> torch.Tensor:
    """Per-class boundary F1 from [4, C] edge counts; NaN where neither map has an edge."""
    pred_px, pred_hit, true_px, true_hit = edges.double()
    precision = torch.where(pred_px > 0, pred_hit / pred_px.clamp_min(1), 0.0)
    recall = torch.where(true_px > 0, true_hit / true_px.clamp_min(1), 0.0)
    f1 = _f1(precision, recall)
    return torch.where((pred_px + true_px) > 0, f1, math.nan)


def _number(value: torch.Tensor) -> float:
    """A Python float; NaN as `math.nan` itself, so equal results compare equal."""
    number = float(value)
    return math.nan if math.isnan(number) else number


def _nanmean(values: torch.Tensor) -> float:
    """Mean of the non-NaN values; NaN if there are none."""
    kept = values[~values.isnan()]
    return float(kept.mean()) if kept.numel() else math.nan


class SegmentationMetrics:
    """Streaming accumulator: `update()` per batch of label maps, `compute()` at the end.

    Per class: `dice` and `iou` from TP/FP/FN summed over the set; `boundary_f1` (see
    `boundary_mask`; a predicted edge pixel is correct when a true edge pixel of the same class
    lies within the tolerance in x and y, and recall is symmetric; NaN when the class has no edge
    in either map, 0 when it has edge in only one), at `boundary_tolerance_px` when given, else
    at `boundary_tolerance_px(h, w)` of each photo (its unpadded extent); `area_error_pct` (NaN
    if no photo holds the class) and `hallucinated_area_pct` (NaN if every photo holds it), see
    the module docstring, with `photos_with_class`, `photos_without_class` and
    `photos_hallucinated` (photos without the class where some was predicted); `support_px`,
    the true pixel count. Summary: `mean_dice`, `mean_iou`, `mean_boundary_f1` over the
    non-background classes (class 0), ignoring NaN; `fixed_mean_dice` and `fixed_classes`;
    `pixel_accuracy`. With `keep_images`, `per_image()` returns each photo's counts.
    """

    def __init__(
        self,
        num_classes: int,
        class_names: list[str],
        boundary_tolerance_px: int | None = None,
        ignore_index: int = IGNORE_INDEX,
        keep_images: bool = False,
    ) -> None:
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        if boundary_tolerance_px is not None and boundary_tolerance_px < 0:
            raise ValueError(f"boundary_tolerance_px must be >= 0, got {boundary_tolerance_px}")
        self.num_classes = num_classes
        self.class_names = list(class_names)
        self.tolerance = boundary_tolerance_px
        self.ignore_index = ignore_index
        self.keep_images = keep_images
        self.reset()

    def reset(self) -> None:
        """Forget everything seen so far."""
        self._stats = torch.zeros(3, self.num_classes, dtype=torch.long)  # rows: TP, FP, FN
        # rows: predicted edge px, of which matched; true edge px, of which matched
        self._edges = torch.zeros(4, self.num_classes, dtype=torch.long)
        self._area_error_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self._area_photos = torch.zeros(self.num_classes, dtype=torch.long)
        self._hallucinated_sum = torch.zeros(self.num_classes, dtype=torch.float64)
        self._empty_photos = torch.zeros(self.num_classes, dtype=torch.long)
        self._hallucinated_photos = torch.zeros(self.num_classes, dtype=torch.long)
        self._images: list[dict] = []

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
        tp, fp, fn = tp.cpu(), fp.cpu(), fn.cpu()
        self._stats += torch.stack([tp, fp, fn]).sum(1)
        valid = target != self.ignore_index
        pixels = valid.sum((1, 2)).cpu()
        self._add_area_errors(pred_area=tp + fp, true_area=tp + fn, pixels=pixels)
        for i in range(pred.shape[0]):
            tolerance = self.tolerance
            if tolerance is None:
                height, width = int(valid[i].any(1).sum()), int(valid[i].any(0).sum())
                tolerance = boundary_tolerance_px(height, width)
            edges = self._edge_counts(pred[i : i + 1], target[i : i + 1], tolerance).cpu()
            self._edges += edges
            if self.keep_images:
                self._images.append(
                    {
                        "tp": tp[i],
                        "fp": fp[i],
                        "fn": fn[i],
                        "pixels": int(pixels[i]),
                        "edges": edges,
                        "tolerance_px": tolerance,
                    }
                )

    def _add_area_errors(
        self, pred_area: torch.Tensor, true_area: torch.Tensor, pixels: torch.Tensor
    ) -> None:
        """Accumulate per-photo area errors and hallucinated areas from [N, C] pixel areas."""
        present = true_area > 0
        error = (pred_area - true_area).abs().double() / true_area.clamp_min(1) * 100
        self._area_error_sum += torch.where(present, error, 0.0).sum(0)
        self._area_photos += present.sum(0)
        share = pred_area.double() / pixels.clamp_min(1).double().unsqueeze(1) * 100
        self._hallucinated_sum += torch.where(present, 0.0, share).sum(0)
        self._empty_photos += (~present).sum(0)
        self._hallucinated_photos += (~present & (pred_area > 0)).sum(0)

    def _edge_counts(
        self, pred: torch.Tensor, target: torch.Tensor, tolerance: int
    ) -> torch.Tensor:
        """[4, C]: predicted edge px, matched ones; true edge px, matched ones."""
        pred_edge = _per_class(pred, boundary_mask(pred, self.ignore_index), self.num_classes)
        true_edge = _per_class(target, boundary_mask(target, self.ignore_index), self.num_classes)
        pred_hit = pred_edge & _dilate(true_edge, tolerance)
        true_hit = true_edge & _dilate(pred_edge, tolerance)
        return torch.stack([m.sum((0, 2, 3)) for m in (pred_edge, pred_hit, true_edge, true_hit)])

    def per_image(self) -> list[dict]:
        """Per photo seen (needs `keep_images`), in order: per class `dice` (`per_image_dice`),
        `true_px`, `pred_px`, `area_error_pct` (None without the class), `hallucinated_area_pct`
        (None with it), `boundary_f1`; and the photo's `pixels` and `tolerance_px`."""
        rows = []
        for image in self._images:
            tp, fp, fn = image["tp"], image["fp"], image["fn"]
            dice = per_image_dice(tp[None], fp[None], fn[None])[0]
            f1 = _boundary_f1(image["edges"])
            per_class = {}
            for c, name in enumerate(self.class_names):
                true_px, pred_px = int(tp[c] + fn[c]), int(tp[c] + fp[c])
                per_class[name] = {
                    "dice": float(dice[c]),
                    "true_px": true_px,
                    "pred_px": pred_px,
                    "area_error_pct": abs(pred_px - true_px) / true_px * 100 if true_px else None,
                    "hallucinated_area_pct": None
                    if true_px
                    else pred_px / max(1, image["pixels"]) * 100,
                    "boundary_f1": float(f1[c]),
                }
            rows.append(
                {
                    "pixels": image["pixels"],
                    "tolerance_px": image["tolerance_px"],
                    "per_class": per_class,
                }
            )
        return rows

    def compute(self) -> dict:
        """{"per_class": {name: {dice, iou, boundary_f1, area_error_pct, support_px}}, means...}."""
        tp, fp, fn = self._stats.double()
        tn = torch.zeros_like(tp)  # unused by Dice and IoU
        dice = smp.metrics.f1_score(tp, fp, fn, tn, zero_division=math.nan)
        iou = smp.metrics.iou_score(tp, fp, fn, tn, zero_division=math.nan)
        boundary_f1 = _boundary_f1(self._edges)
        area_error = torch.where(
            self._area_photos > 0, self._area_error_sum / self._area_photos.clamp_min(1), math.nan
        )
        hallucinated = torch.where(
            self._empty_photos > 0,
            self._hallucinated_sum / self._empty_photos.clamp_min(1),
            math.nan,
        )
        columns = (dice, iou, boundary_f1, area_error, hallucinated)
        per_class = {
            name: {
                **{key: _number(col[c]) for key, col in zip(FLOAT_KEYS, columns, strict=True)},
                "support_px": int(tp[c] + fn[c]),
                "photos_with_class": int(self._area_photos[c]),
                "photos_without_class": int(self._empty_photos[c]),
                "photos_hallucinated": int(self._hallucinated_photos[c]),
            }
            for c, name in enumerate(self.class_names)
        }
        labelled = int((tp + fn).sum())
        result = {
            "per_class": per_class,
            "mean_dice": _nanmean(dice[1:]),
            "mean_iou": _nanmean(iou[1:]),
            "mean_boundary_f1": _nanmean(boundary_f1[1:]),
            "pixel_accuracy": int(tp.sum()) / labelled if labelled else math.nan,
            "boundary_tolerance": self._tolerance_text(),
        }
        result["fixed_classes"] = fixed_classes(result)
        result["fixed_mean_dice"] = fixed_class_mean(result)
        return result

    def _tolerance_text(self) -> str:
        if self.tolerance is not None:
            return f"{self.tolerance} px"
        return f"{BOUNDARY_TOLERANCE:.1%} of the photo diagonal"


def format_table(metrics: dict) -> list[dict]:
    """One row per class ({"class": name, dice, iou, ...}) from `SegmentationMetrics.compute()`."""
    return [{"class": name, **values} for name, values in metrics["per_class"].items()]
