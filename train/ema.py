"""Weight EMA (`train.ema`): an exponential moving average of the weights, kept beside the model.

timm's ModelEmaV3 with its decay warm-up: the decay grows with the optimiser step as
1 - (1 + step) ** -2/3 up to `train.ema_decay`, so the average follows the weights early and
smooths them late, also in runs of a few hundred steps (a fixed 0.999 would still mostly hold
the first weights there). With EMA on, validation, the best checkpoint and so the exported
model use the averaged weights; the resumable `last` checkpoint carries them in its train state.
"""

from __future__ import annotations

import torch
from timm.utils.model_ema import ModelEmaV3

from dermaseg.train.config import TrainConfig


def build_ema(model: torch.nn.Module, config: TrainConfig) -> ModelEmaV3 | None:
    """The EMA of `model` (a copy of its weights now), or None when `train.ema` is off."""
    if not config.ema:
        return None
    # float32 averages (no stochastic rounding: the weights are float32 under autocast)
    return ModelEmaV3(model, decay=config.ema_decay, use_warmup=True, stochastic_rounding=False)


def ema_state(ema: ModelEmaV3 | None) -> dict[str, torch.Tensor] | None:
    """The averaged weights, for the train state of a resumable checkpoint."""
    return None if ema is None else ema.module.state_dict()


def restore_ema(
    ema: ModelEmaV3 | None, state: dict[str, torch.Tensor] | None, model: torch.nn.Module
) -> None:
    """Put a resumed run's averaged weights back; a run that had EMA off starts its average
    from the resumed weights."""
    if ema is not None:
        ema.module.load_state_dict(model.state_dict() if state is None else state)
