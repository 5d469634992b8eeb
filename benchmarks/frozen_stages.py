"""Benchmark: a CPU training step with the encoder's first stages frozen (`model.frozen_stages`).

Times forward, loss, backward and an Adam step of the recipe's network (`train/step_time.py`,
as `auto` times it) with 0, 1, 2 and 3 frozen stages, alternating round by round so that every
setting sees the same machine load; prints the median seconds of each and its speed-up over 0.

Usage: python benchmarks/frozen_stages.py [--side 256] [--batch 8] [--rounds 5] [--threads 1]
       [--decoder 64 48 32 24 16] [--stages 0 1 2 3]
"""

from __future__ import annotations

import argparse
import statistics

import torch
from cpu_report import cpu_line

from dermaseg.train.config import ModelConfig
from dermaseg.train.step_time import seconds_per_step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=256, help="sample side in px (a crop)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--decoder", type=int, nargs=5, default=[64, 48, 32, 24, 16])
    parser.add_argument("--stages", type=int, nargs="+", default=[0, 1, 2, 3])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(cpu_line(), flush=True)
    seconds: dict[int, list[float]] = {stages: [] for stages in args.stages}
    for _ in range(args.rounds):
        for stages in args.stages:
            model = ModelConfig(decoder_channels=args.decoder, frozen_stages=stages)
            seconds[stages].append(seconds_per_step(model, 2, args.side, args.batch, "auto"))
    base = statistics.median(seconds[args.stages[0]])
    encoder = ModelConfig().encoder  # the recipes' encoder, as timed above
    print(f"U-Net {encoder}, decoder {args.decoder}, {args.batch} x {args.side}^2 px")
    print(f"{'frozen stages':>13}  {'s/step':>7}  speed-up over {args.stages[0]}")
    for stages, times in seconds.items():
        median = statistics.median(times)
        print(f"{stages:>13}  {median:7.2f}  {base / median:.2f}x")


if __name__ == "__main__":
    main()
