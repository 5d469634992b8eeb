"""Benchmark: the exported graph's test-time augmentation modes side by side in one run.

  speed      the run's checkpoint exported with `tta` none, flip (2 passes) and mirror (4
             passes: both axes, as nnU-Net mirrors) and run by onnxruntime on the same photos
             (default 1008x756, the size `dermaseg plan` analyses a 12-MP photo at), alternating
             run by run: median ms each and the ratio to none
  accuracy   with --data DIR: test Dice (pooled), mean per-image Dice, boundary F1 and median
             |area error| of each mode at full photo size, each with the post-processing the
             export learns on val for it, as `benchmarks/real_data.py --rescore` scores a run

Usage: python benchmarks/tta_modes.py RUN_DIR [--data DIR] [--sizes 1008x756] [--runs 7]
       [--threads 2] [--modes none flip mirror]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from cpu_report import cpu_line

from dermaseg.datasets.synth import generate_photo
from dermaseg.train.evaluate import load_model
from dermaseg.train.export import to_onnx
from dermaseg.train.planning_graph import TTA_FLIPS, PlanningGraph

MODES = ("none", *TTA_FLIPS)


def graphs(run_dir: Path, modes: list[str]) -> dict[str, PlanningGraph]:
    """The run's best checkpoint in one planning graph per TTA mode."""
    net, meta = load_model(run_dir / "weights" / "best")
    net.eval()
    size, classes = int(meta["working_size"]), len(meta["taxonomy"])
    return {
        mode: PlanningGraph(net, size, classes, tta=None if mode == "none" else mode).eval()
        for mode in modes
    }


def time_onnx(models: dict[str, PlanningGraph], sizes, runs: int, threads: int) -> None:
    """Median onnxruntime ms per photo of each graph, alternating graphs run by run."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for mode, graph in models.items():
            path = Path(tmp) / f"{mode}.onnx"
            to_onnx(graph, path)
            sessions[mode] = ort.InferenceSession(str(path), options, ["CPUExecutionProvider"])
        for width, height in sizes:
            photo = generate_photo(7, (width, height)).rgb[None]
            feed = {"image": photo, "mm_per_pixel": np.zeros(1, np.float32)}
            times: dict[str, list[float]] = {mode: [] for mode in sessions}
            for _ in range(runs + 1):  # the first run of each warms up and is dropped
                for mode, session in sessions.items():
                    started = time.perf_counter()
                    session.run(None, feed)
                    times[mode].append(time.perf_counter() - started)
            medians = {mode: statistics.median(t[1:]) * 1000 for mode, t in times.items()}
            base = medians[next(iter(medians))]
            shown = ", ".join(f"{m} {ms:.0f} ms ({ms / base:.2f}x)" for m, ms in medians.items())
            print(f"{width}x{height}: {shown}")


def accuracy(run_dir: Path, data: Path, modes: list[str]) -> None:
    """Test-split scores of each mode through its graph and its own learned post-processing."""
    import real_data as rd

    from dermaseg.datasets.dataset import Dataset

    test = rd._load_split(Dataset.open(data), "test")
    for mode in modes:
        model = rd.recipe_model(data, run_dir, mode)["model"]
        result = rd.score(lambda image, m=model: rd.predict_recipe(m, image), test, False)
        print(
            f"{mode}: test Dice {result['dice']:.4f}, per-image {result['mean_image_dice']:.4f}, "
            f"boundary F1 {result['boundary_f1']:.3f}, median area error "
            f"{result['median_area_error_pct']:.2f} % ({len(test)} photos)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a training run folder (weights/best)")
    parser.add_argument("--data", type=Path, help="a dataset with a test split: score each mode")
    parser.add_argument("--sizes", default="1008x756", help="WxH,... photos to time")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [tuple(int(v) for v in size.split("x")) for size in args.sizes.split(",")]
    print(cpu_line(), file=sys.stderr)
    time_onnx(graphs(args.run_dir, args.modes), sizes, args.runs, args.threads)
    if args.data:
        accuracy(args.run_dir, args.data, args.modes)


if __name__ == "__main__":
    main()
