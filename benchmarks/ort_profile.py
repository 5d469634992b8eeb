"""Benchmark: where an ONNX network's time goes in onnxruntime, per kind of operator.

Runs the model with ORT's profiler (the options `dermaseg plan` uses) and prints, per kind of
operator (convolutions split into 3x3, 1x1, depthwise and other kernels), the median time per
run, its share, GFLOP and GFLOP/s, then the slowest convolutions. FLOPs are counted from the
shapes ORT reports after its graph optimisations: blocked (NCHWc) convolutions pad channel
counts to multiples of 8, so a 4-class head counts as 8.

Usage: python benchmarks/ort_profile.py MODEL.onnx [--size 384] [--runs 20] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from dermaseg.infer.session import session_options

WARMUP = 3


def profile_events(model: Path, size: int, runs: int, threads: int) -> list[dict]:
    """ORT profiler events of `runs` runs (after a warm-up) on a random 1x3xSxS input."""
    with tempfile.TemporaryDirectory(prefix="ort-profile-") as tmp:
        options = session_options(threads)
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = ort.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        feed = session.get_inputs()[0]
        dtype = np.uint8 if feed.type == "tensor(uint8)" else np.float32
        shape = [1, 3, size, size] if dtype is np.float32 else [1, size, size, 3]
        pixels = np.random.default_rng(0).integers(0, 256, shape).astype(dtype)
        for _ in range(WARMUP + runs):
            session.run(None, {feed.name: pixels})
        return json.loads(Path(session.end_profiling()).read_text())


def _shape(entry: dict) -> list[int]:
    return next(iter(entry.values()))


def conv_kind(args: dict) -> tuple[str, float]:
    """'3x3', '1x1', 'depthwise' or 'KxK' and GFLOP of one Conv event."""
    weight, output = _shape(args["input_type_shape"][1]), _shape(args["output_type_shape"][0])
    gflop = 2 * math.prod(output) * math.prod(weight[1:]) / 1e9
    if weight[1] == 1:
        return "conv depthwise", gflop
    return f"conv {weight[2]}x{weight[3]}", gflop


def summarize(events: list[dict], runs: int) -> tuple[list[tuple], list[tuple]]:
    """Per kind: (kind, count, ms per run, GFLOP); per convolution: (ms, GFLOP, shapes)."""
    per_node: dict[str, list[float]] = defaultdict(list)
    node_args: dict[str, dict] = {}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            per_node[event["name"]].append(event["dur"] / 1000)
            node_args[event["name"]] = event["args"]
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    convs = []
    for name, durations in per_node.items():
        args = node_args[name]
        ms = statistics.median(durations[-runs:])
        kind, gflop = (args["op_name"], 0.0)
        if args["op_name"] == "Conv":
            kind, gflop = conv_kind(args)
            shapes = [_shape(s) for s in args["input_type_shape"][:2]]
            convs.append((ms, gflop, shapes, _shape(args["output_type_shape"][0])))
        kinds[kind][0] += 1
        kinds[kind][1] += ms
        kinds[kind][2] += gflop
    rows = sorted(((k, *v) for k, v in kinds.items()), key=lambda row: -row[2])
    return rows, sorted(convs, key=lambda row: -row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--top", type=int, default=10, help="slowest convolutions to list")
    args = parser.parse_args()
    events = profile_events(args.model, args.size, args.runs, args.threads)
    rows, convs = summarize(events, args.runs)
    total_ms, total_gflop = sum(r[2] for r in rows), sum(r[3] for r in rows)
    print(f"{'operator':<18}{'nodes':>6}{'ms/run':>9}{'share':>8}{'GFLOP':>8}{'GFLOP/s':>9}")
    for kind, count, ms, gflop in rows:
        rate = f"{gflop / (ms / 1000):9.1f}" if gflop else f"{'':9}"
        print(f"{kind:<18}{count:>6}{ms:>9.2f}{100 * ms / total_ms:>7.1f}%{gflop:>8.2f}{rate}")
    print(f"{'all':<18}{'':>6}{total_ms:>9.2f}{'':>8}{total_gflop:>8.2f}", end="")
    print(f"{total_gflop / (total_ms / 1000):9.1f}")
    print(f"\nslowest {args.top} convolutions: ms, GFLOP, GFLOP/s, input, weight -> output")
    for ms, gflop, (data, weight), output in convs[: args.top]:
        print(f"{ms:7.2f} {gflop:6.2f} {gflop / (ms / 1000):6.1f}  {data} {weight} -> {output}")


if __name__ == "__main__":
    main()
