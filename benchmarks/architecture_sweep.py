"""Benchmark: accuracy per FLOP of candidate architectures on the synthetic benchmark.

Every candidate trains with the same schedule (the `synthetic-demo` recipe's input size,
augmentation, loss, optimiser and epochs, encoder never frozen) on the same fresh synthetic
dataset (as `train_synthetic.py`: n=160 photos of 256 px, seed 0) and is scored on its test
split. Only the `model` section differs: encoder, encoder weights and decoder channels. For each:
held-out Dice per class and mean over the lesion classes, GFLOP of the bare network at the
deployment working size (default 384) and at 512, and ORT fp32 latency at the working size
(all candidates' sessions interleaved repetition by repetition, medians).

Candidates are `NAME=ENCODER:WEIGHTS:D1,D2,D3,D4,D5`; the defaults are the shipped recipes'
architectures (gpu-resnet34 without ImageNet weights: they cannot be downloaded here) and two
more decoder widths for EfficientNet-Lite0.

Usage: python benchmarks/architecture_sweep.py [--candidate NAME=SPEC ...] [--epochs 12]
       [--working-size 384] [--seeds 0] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from export_latency import median_ms, network_only_onnx
from perf import count_gflop, network_input, ort_session

from dermaseg.datasets.synth import generate_dataset, generate_photo
from dermaseg.train.config import load_run_config
from dermaseg.train.evaluate import evaluate_checkpoint, load_model
from dermaseg.train.trainer import train

LESIONS = ("vitiligo", "scar", "thinning")
DEFAULT_CANDIDATES = {
    "lite0-d256 (smp default decoder)": "tu-efficientnet_lite0:imagenet-lite0:256,128,64,32,16",
    "lite0-d128 (cpu-lite)": "tu-efficientnet_lite0:imagenet-lite0:128,64,48,32,16",
    "lite0-d96 (synthetic-demo)": "tu-efficientnet_lite0:imagenet-lite0:96,64,48,32,16",
    "lite0-d64": "tu-efficientnet_lite0:imagenet-lite0:64,48,32,24,16",
    "lite0-d48": "tu-efficientnet_lite0:imagenet-lite0:48,32,24,16,16",
    "resnet34-d256 (gpu-resnet34, no weights)": "resnet34:null:256,128,64,32,16",
}


def model_overrides(spec: str) -> list[str]:
    """Config overrides for `ENCODER:WEIGHTS:D1,...,D5`."""
    encoder, weights, decoder = spec.split(":")
    return [
        f"model.encoder={encoder}",
        f"model.encoder_weights={weights}",
        f"model.decoder_channels=[{decoder}]",
        "model.freeze_encoder_epochs=0",
    ]


def train_candidate(
    name: str, spec: str, data: Path, runs: Path, epochs: int, seed: int, run_name: str
) -> dict:
    """Train one candidate on `data`; its held-out metrics and checkpoint."""
    config = load_run_config(
        "synthetic-demo",
        [
            f"data={data}",
            f"runs_dir={runs}",
            f"name={run_name}",
            f"train.epochs={epochs}",
            f"train.seed={seed}",
            "train.overlay_every=0",
            *model_overrides(spec),
        ],
    )
    started = time.perf_counter()
    result = train(config, show_progress=False)
    seconds = time.perf_counter() - started
    checkpoint = result.run_dir / "weights" / "best"
    test = evaluate_checkpoint(checkpoint, data, "test")
    dice = {n: test["per_class"][n]["dice"] for n in LESIONS}
    print(f"  {name} seed {seed}: {seconds:.0f} s, Dice {dice}", flush=True)
    return {"train_seconds": seconds, "dice": dice, "checkpoint": checkpoint}


def latencies(checkpoints: dict[str, Path], size: int, work: Path, repeats: int) -> dict:
    """Median ms of each candidate's bare network in ORT fp32 at SxS, interleaved."""
    threads = os.cpu_count() or 1
    pixels = network_input(generate_photo(1, (size, size)).rgb)
    runs = {}
    for index, (name, checkpoint) in enumerate(checkpoints.items()):
        net, _ = load_model(checkpoint)
        path = work / f"net{index}.onnx"
        network_only_onnx(net, size, path)
        session = ort_session(path, threads)
        runs[name] = lambda s=session: s.run(None, {"pixels": pixels})
    return median_ms(runs, repeats)


def print_table(rows: list[dict], size: int) -> None:
    head = f"{'candidate':<42}{'vitiligo':>9}{'scar':>7}{'thin':>7}{'mean':>7}"
    cost = f"{'GFLOP@' + str(size):>11}{'GFLOP@512':>10}{'ms@' + str(size):>8}{'Dice/GFLOP':>11}"
    print(f"\n{head}{cost}")
    for row in rows:
        dice = row["dice_mean_by_class"]
        print(
            f"{row['name']:<42}{dice['vitiligo']:>9.3f}{dice['scar']:>7.3f}{dice['thinning']:>7.3f}"
            f"{row['dice_mean']:>7.3f}{row['gflop_working']:>11.2f}{row['gflop_512']:>10.2f}"
            f"{row['ort_fp32_ms']:>8.1f}{row['dice_mean'] / row['gflop_working']:>11.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", action="append", metavar="NAME=SPEC")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--working-size", type=int, default=384)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    candidates = (
        dict(c.split("=", 1) for c in args.candidate) if args.candidate else DEFAULT_CANDIDATES
    )
    seeds = [int(s) for s in args.seeds.split(",")]
    torch.set_num_threads(os.cpu_count() or 1)
    rows, checkpoints = [], {}
    with tempfile.TemporaryDirectory(prefix="dermaseg-sweep-") as tmp:
        work = Path(tmp)
        generate_dataset(work / "data", n=160, size=256, seed=0)
        for index, (name, spec) in enumerate(candidates.items()):
            runs = [
                train_candidate(
                    name, spec, work / "data", work / "runs", args.epochs, seed, f"c{index}-s{seed}"
                )
                for seed in seeds
            ]
            by_class = {n: statistics.mean(r["dice"][n] for r in runs) for n in LESIONS}
            net, _ = load_model(runs[0]["checkpoint"])
            rows.append(
                {
                    "name": name,
                    "spec": spec,
                    "seeds": seeds,
                    "dice_by_seed": [r["dice"] for r in runs],
                    "dice_mean_by_class": by_class,
                    "dice_mean": statistics.mean(by_class.values()),
                    "train_seconds": [round(r["train_seconds"], 1) for r in runs],
                    "gflop_working": count_gflop(net, args.working_size),
                    "gflop_512": count_gflop(net, 512),
                }
            )
            checkpoints[name] = runs[0]["checkpoint"]
        ms = latencies(checkpoints, args.working_size, work, args.repeats)
    for row in rows:
        row["ort_fp32_ms"] = ms[row["name"]]
    print_table(rows, args.working_size)
    best = max(rows, key=lambda r: r["dice_mean"])
    print(f"\nbest mean Dice: {best['name']} {best['dice_mean']:.3f}")
    for row in rows:
        print(f"  {row['name']:<42} {100 * (row['dice_mean'] - best['dice_mean']):+.1f} points")
    if args.json:
        report = {"epochs": args.epochs, "working_size": args.working_size, "rows": rows}
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
