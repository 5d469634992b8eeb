"""Segmentation losses built from a small config: Dice, focal and Tversky from smp, plus CE.

Every loss takes logits [N, C, H, W] (float) and a target [N, H, W] (int64) in which
`IGNORE_INDEX` marks padded pixels; those pixels contribute nothing to the loss or its gradient.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from segmentation_models_pytorch.losses import DiceLoss, FocalLoss, TverskyLoss
from torch import nn

IGNORE_INDEX = 255
"""Target value of pixels that carry no label (padding); excluded from losses and metrics."""


class LossConfig(BaseModel):
    """Which loss to train with and its weights.

    `dice_ce` and `dice_focal` add a region term (Dice, weighted by `dice_weight`) to a pixel term
    (cross-entropy or focal, weighted by `ce_weight`). `class_weights` (one per class) weight the
    pixel term; the Tversky loss has none, so it refuses them.
    """

    model_config = ConfigDict(extra="forbid")

    name: Literal["dice_ce", "dice_focal", "focal", "tversky", "ce"] = "dice_ce"
    dice_weight: float = Field(1.0, ge=0)
    ce_weight: float = Field(1.0, ge=0)
    class_weights: list[float] | None = None
    focal_gamma: float = Field(2.0, ge=0)
    tversky_alpha: float = Field(0.3, ge=0)
    tversky_beta: float = Field(0.7, ge=0)


class WeightedSum(nn.Module):
    """The weighted sum of several losses called on the same (logits, target)."""

    def __init__(self, terms: dict[str, nn.Module], weights: dict[str, float]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict(terms)
        self.weights = weights

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * term(logits, target) for name, term in self.terms.items())


def _cross_entropy(class_weights: list[float] | None) -> nn.Module:
    weight = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
    return nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE_INDEX)


def _dice() -> nn.Module:
    return DiceLoss(mode="multiclass", ignore_index=IGNORE_INDEX)


def _focal(config: LossConfig) -> nn.Module:
    return FocalLoss(
        mode="multiclass",
        gamma=config.focal_gamma,
        ignore_index=IGNORE_INDEX,
        class_weights=config.class_weights,
    )


def _check_class_weights(config: LossConfig, num_classes: int) -> None:
    if config.class_weights is None:
        return
    if len(config.class_weights) != num_classes:
        raise ValueError(
            f"loss.class_weights has {len(config.class_weights)} values "
            f"but the model has {num_classes} classes"
        )
    if config.name == "tversky":
        raise ValueError("loss.class_weights apply to the ce/focal term; 'tversky' has none")


def build_loss(config: LossConfig, num_classes: int) -> nn.Module:
    """The loss module named by `config`, for logits with `num_classes` channels."""
    _check_class_weights(config, num_classes)
    if config.name == "ce":
        return _cross_entropy(config.class_weights)
    if config.name == "focal":
        return _focal(config)
    if config.name == "tversky":
        return TverskyLoss(
            mode="multiclass",
            ignore_index=IGNORE_INDEX,
            alpha=config.tversky_alpha,
            beta=config.tversky_beta,
        )
    pixel = _cross_entropy(config.class_weights) if config.name == "dice_ce" else _focal(config)
    return WeightedSum(
        {"dice": _dice(), "pixel": pixel},
        {"dice": config.dice_weight, "pixel": config.ce_weight},
    )
