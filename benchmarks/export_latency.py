"""Benchmark: PyTorch eager vs exported ONNX fp32 vs int8 latency, and in-graph pre/post cost.

Measured side by side in one run, on the same photos, with the same thread count; the
variants compared alternate repetition by repetition, so CPU contention hits them alike:
  network only at 1x3xSxS:  PyTorch eager, ORT fp32 (network exported alone)
  planning graph on a photo: ORT fp32 and ORT int8 (resize, normalise, pad, network, argmax,
                             upsample, boundary, areas), at SxS and at 4032x3024
  pre/post overhead = planning graph fp32 at SxS - network-only ORT fp32
  the network's GFLOP/s as a fraction of the CPU's practical fp32 peak (perf.practical_peak)
It prints the CPU model and its SIMD flags (AVX2, AVX-512, VNNI) first.
With --calibration, the int8 sibling (`export --int8`) is timed too and its guard's Dice
report (per-image Dice on the fixed class set, val split) is printed.

Usage: python benchmarks/export_latency.py CHECKPOINT [--working-size 512]
       [--calibration DATASET] [--repeats 10]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import onnxruntime as ort
import torch
from cpu_report import cpu_line, cpu_report

from dermaseg.datasets.synth import generate_photo
from dermaseg.infer.session import PlanningModel, session_options
from dermaseg.train.evaluate import load_model
from dermaseg.train.export import export_checkpoint

SETTLE_S = 0.05  # pause between runs: idle OpenMP / ORT threads stop spinning before the next


def median_ms(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median milliseconds per run; the runs alternate, so CPU contention hits all alike, with a
    short pause between runs so one variant's spinning threads do not slow the next."""
    for run in runs.values():
        run()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            time.sleep(SETTLE_S)
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: 1000 * statistics.median(values) for name, values in times.items()}


def network_only_onnx(net: torch.nn.Module, size: int, path: Path) -> None:
    example = torch.zeros(1, 3, size, size)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            net,
            (example,),
            str(path),
            dynamo=True,
            opset_version=18,
            input_names=["pixels"],
            output_names=["logits"],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--working-size", type=int, default=512)
    parser.add_argument("--calibration", type=Path)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    size, threads = args.working_size, torch.get_num_threads()
    cpu = cpu_report()
    print(cpu_line(cpu))
    net, _ = load_model(args.checkpoint)
    square = generate_photo(1, (size, size), with_marker=True).rgb
    large = generate_photo(2, (4032, 3024), with_marker=True).rgb
    report: dict = {"working_size": size, "threads": threads, "cpu": cpu}
    with tempfile.TemporaryDirectory() as tmp:
        fp32_path, net_path = Path(tmp) / "fp32.onnx", Path(tmp) / "net.onnx"
        export_checkpoint(args.checkpoint, fp32_path, working_size=size)
        network_only_onnx(net, size, net_path)
        pixels = torch.from_numpy(square).permute(2, 0, 1)[None].float()
        bare = ort.InferenceSession(
            str(net_path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        feed = {"pixels": pixels.numpy()}
        with torch.no_grad():
            network = median_ms(
                {"torch_eager": lambda: net(pixels), "ort_fp32": lambda: bare.run(None, feed)},
                args.repeats,
            )
        report["torch_eager_network_ms"] = network["torch_eager"]
        report["ort_fp32_network_ms"] = network["ort_fp32"]
        models = {"fp32": PlanningModel(fp32_path, threads)}
        if args.calibration is not None:
            pair = Path(tmp) / "pair.onnx"
            exported = export_checkpoint(
                args.checkpoint,
                pair,
                working_size=size,
                int8=True,
                data=args.calibration,
                max_dice_drop=1.0,
            )
            models["int8"] = PlanningModel(exported.int8["path"], threads)
            report["int8_dice"] = exported.int8
        for photo, label, repeats in (
            (square, str(size), args.repeats),
            (large, "12mp", max(3, args.repeats // 3)),
        ):
            runs = {name: lambda m=model, p=photo: m.run(p, 0.1) for name, model in models.items()}
            for name, ms in median_ms(runs, repeats).items():
                report[f"ort_{name}_plan_{label}_ms"] = ms
    from perf import PEAK_N, count_gflop, practical_peak

    report["peak"] = practical_peak(PEAK_N, threads, 3)
    gflop = count_gflop(net, size)
    for name in ("torch_eager", "ort_fp32"):
        gflops = gflop / (report[f"{name}_network_ms"] / 1000)
        report[f"{name}_network_of_peak"] = gflops / report["peak"]["practical_gflops"]
    report["pre_post_overhead_ms"] = (
        report[f"ort_fp32_plan_{size}_ms"] - report["ort_fp32_network_ms"]
    )
    report["speedup_ort_fp32_vs_torch"] = (
        report["torch_eager_network_ms"] / report["ort_fp32_network_ms"]
    )
    if "int8" in models:
        report["speedup_int8_vs_fp32_plan"] = (
            report[f"ort_fp32_plan_{size}_ms"] / report[f"ort_int8_plan_{size}_ms"]
        )
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in report.items()}))


if __name__ == "__main__":
    main()
