"""How long one training step of a network takes on this machine: what a time-budget plan needs.

`seconds_per_step` builds the network without its ImageNet weights (their values do not change
the cost) and times forward, loss, backward and an Adam step on random photos of the planned
sample size and batch, in the precision (`train.amp`) and memory layout training uses on the CPU,
with the encoder stages training keeps frozen (`model.frozen_stages`) frozen.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from dermaseg.train.config import ModelConfig
from dermaseg.train.distributed import amp_dtype
from dermaseg.train.model import build_model, set_encoder_trainable

TIMED_STEPS = 2  # after one warm-up step; the fastest counts (others may share the CPU)


def seconds_per_step(model: ModelConfig, classes: int, side: int, batch: int, amp: str) -> float:
    """The seconds of one CPU training step of `model` on `batch` photos of `side`^2 px."""
    untrained = model.model_copy(update={"encoder_weights": None, "init_from": None})
    net = build_model(untrained, classes).to(memory_format=torch.channels_last).train()
    set_encoder_trainable(net, True, model.frozen_stages)
    optimizer = torch.optim.Adam(p for p in net.parameters() if p.requires_grad)
    photos = (torch.rand(batch, 3, side, side) * 255).to(memory_format=torch.channels_last)
    dtype = amp_dtype(amp, torch.device("cpu"))
    times = []
    for _ in range(TIMED_STEPS + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            logits = net(photos).float()
        loss = F.binary_cross_entropy_with_logits(logits, (logits.detach() < 0).float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return min(times[1:])
