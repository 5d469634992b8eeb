"""Benchmark: train the `synthetic-demo` recipe on fresh synthetic data; report time and Dice.

Goal (issue 3): at most 6 minutes of training on this machine reaching held-out (test split)
Dice >= 0.90 vitiligo, >= 0.75 scar, >= 0.75 thinning.

Usage: python benchmarks/train_synthetic.py [--n 160] [--size 256] [--seed 0] [override ...]
Prints one JSON object; exits 1 if a goal is missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dermaseg.datasets.synth import generate_dataset
from dermaseg.train.config import load_run_config
from dermaseg.train.evaluate import evaluate_checkpoint
from dermaseg.train.trainer import train

GOALS = {"vitiligo": 0.90, "scar": 0.75, "thinning": 0.75}
MAX_SECONDS = 360.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. train.epochs=10")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_dataset(data, n=args.n, size=args.size, seed=args.seed)
        config = load_run_config(
            "synthetic-demo", [f"data={data}", f"runs_dir={tmp}/runs", *args.overrides]
        )
        started = time.perf_counter()
        result = train(config, show_progress=False)
        seconds = time.perf_counter() - started
        test = evaluate_checkpoint(result.run_dir / "weights" / "best", data, "test")
    dice = {name: round(test["per_class"][name]["dice"], 4) for name in GOALS}
    report = {
        "photos": args.n,
        "photo_size": args.size,
        "test_photos": test["photos"],
        "working_size": config.input.size,
        "epochs": result.epochs_done,
        "train_seconds": round(seconds, 1),
        "max_seconds": MAX_SECONDS,
        "test_dice": dice,
        "goals": GOALS,
        "test_area_error_pct": {n: round(test["per_class"][n]["area_error_pct"], 2) for n in GOALS},
        "meets_goals": seconds <= MAX_SECONDS and all(dice[n] >= g for n, g in GOALS.items()),
    }
    print(json.dumps(report))
    sys.exit(0 if report["meets_goals"] else 1)


if __name__ == "__main__":
    main()
