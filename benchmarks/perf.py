"""Benchmark: one run, same inputs: network latency and GFLOP/s, 12-MP plan, folder, training.

  network    the bare network (batch 1, fp32 NCHW float) at 512 and at the working size:
             PyTorch eager, ORT fp32 and ORT int8 (static QDQ, settings of train/quantize.py),
             interleaved repetition by repetition, medians; GFLOP (2 x conv/linear MACs,
             counted with forward hooks) and GFLOP/s as a fraction of a practical fp32 peak
             (a 4096^2 float32 matrix product: numpy's BLAS and an ORT MatMul, alternating,
             same thread count, the higher median; rescaled by the same ORT MatMul timed
             among the network runs, so the fraction sees the same CPU contention)
  plan       `plan` of a 4032x3024 JPEG with the fp32 planning model and with its int8
             sibling (`export --int8`, calibrated on --data's train split, or on synthetic
             photos), alternating run by run: median total and per stage over the runs (the
             outputs stage also split: overlay drawn and encoded, mask PNG, COCO, report and
             JSONs, the committed write), the inference-stage ratio, and what `--precision
             auto` picks on this CPU; peak RSS (VmHWM) of a fresh process that imports
             dermaseg.infer.batch and plans it once
  folder     12 such photos (different seeds) planned by one BatchPlanner: photos per minute
  train      the recipe's training images/s (24 synthetic photos of 256 px, CPU, 1 epoch,
             encoder not frozen), from the run's metrics.csv

With --recipe the model is random-init: its network figures hold, but its masks are noise, so
the plan figures (thousands of tiny patches) say nothing about real use; give a trained
checkpoint for those.

Exports (dynamo, slow) are cached in --cache under the checkpoint's sha256 and the size, so a
second run is fast. Other processes on the same cores inflate absolute times; the variants
compared alternate, so their ratios stay fair (the load average is printed at start and end).

The CPU model and its SIMD flags (AVX2, AVX-512, VNNI) are printed first.

Usage: python benchmarks/perf.py [CHECKPOINT | --recipe NAME] [--working-size N] [--data DIR]
       [--threads N] [--cache DIR] [--skip-int8] [--skip-train] [--quick] [--json OUT.json]
       [--plan-only] [--plan-runs N]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import yaml
from cpu_report import cpu_line, cpu_report
from export_latency import median_ms, network_only_onnx
from onnxruntime.quantization import CalibrationDataReader, quant_pre_process
from PIL import Image

from dermaseg.datasets.synth import generate_dataset, generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.batch import BatchPlanner
from dermaseg.infer.contract import int8_sibling
from dermaseg.infer.precision import choose_precision
from dermaseg.infer.session import PlanningModel, session_options
from dermaseg.train.checkpoint import load_checkpoint, save_checkpoint
from dermaseg.train.config import load_run_config
from dermaseg.train.evaluate import load_model
from dermaseg.train.export import export_checkpoint
from dermaseg.train.model import build_model
from dermaseg.train.quantize import quantize_qdq
from dermaseg.train.trainer import checkpoint_meta, train

OUTPUT_STAGES = tuple(f"outputs.{s}" for s in ("overlay", "mask", "coco", "report", "write"))
STAGES = ("decode", "calibrate", "inference", "geometry", "tone", "procedure", *OUTPUT_STAGES)
PHOTO_SIZE = (4032, 3024)
FOLDER_PHOTOS = 12
TRAIN_PHOTOS = 24
DEFAULT_RECIPE = "cpu-lite"  # the default model: the recipe recommended for real photos
PEAK_N = 4096

NUMPY_MATMUL = """
import sys, time
import numpy as np
n = int(sys.argv[1])
a = np.random.default_rng(0).random((n, n), dtype=np.float32)
b = a.T.copy()
a[:64, :64] @ b[:64, :64]  # starts the BLAS threads
started = time.perf_counter()
a @ b
print(time.perf_counter() - started)
"""

RSS_PROBE = """
import json, sys
from pathlib import Path
from dermaseg.infer.batch import BatchPlanner
from dermaseg.infer.session import PlanningModel
def peak_mb():
    # VmHWM, this process image's own peak: ru_maxrss would include the benchmark's, inherited
    # through fork and exec
    lines = Path("/proc/self/status").read_text().splitlines()
    return int(next(x for x in lines if x.startswith("VmHWM")).split()[1]) / 1024
after_import = peak_mb()
model, photo, out, threads = sys.argv[1:5]
planner = BatchPlanner(Path(out), model=PlanningModel(model, int(threads)), overwrite=True)
planner.plan_photo(Path(photo), "rss")
print(json.dumps({
    "after_import_mb": after_import,
    "peak_mb": peak_mb(),
    "torch_imported": "torch" in sys.modules,
}))
"""


# ---- model and cached exports


def recipe_checkpoint(recipe: str, cache: Path) -> Path:
    """A random-init checkpoint of a shipped recipe (seed 0), made once in `cache` per
    version of the recipe's model section."""
    config = load_run_config(recipe, ["data=unused", "model.encoder_weights=null"])
    model_sha = hashlib.sha256(config.model.model_dump_json().encode()).hexdigest()[:12]
    stem = cache / f"recipe-{recipe}-{model_sha}" / "weights" / "best"
    if not stem.with_suffix(".safetensors").exists():
        torch.manual_seed(0)
        model = build_model(config.model, DEFAULT_TAXONOMY.num_classes)
        meta = checkpoint_meta(config, DEFAULT_TAXONOMY, 0, None, world_size=1)
        save_checkpoint(stem, model.state_dict(), meta)
    return stem.with_suffix(".safetensors")


def cached(path: Path, make: Callable[[Path], object]) -> Path:
    """`path`, made by `make(staging path)` unless already there; saved as one file (the
    exporter may write weights beside the model), then renamed into place."""
    if not path.exists():
        print(f"  making {path.name} ...", flush=True)
        with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
            staged, single = Path(tmp) / "staged.onnx", Path(tmp) / "single.onnx"
            make(staged)
            onnx.save(onnx.load(str(staged)), str(single))
            single.replace(path)
    return path


class NetworkReader(CalibrationDataReader):
    """Calibration inputs for the bare network, one at a time."""

    def __init__(self, inputs: list[np.ndarray]) -> None:
        self._feeds = iter({"pixels": x} for x in inputs)

    def get_next(self) -> dict | None:
        return next(self._feeds, None)


def quantize_network(fp32: Path, out: Path, size: int) -> None:
    """Static QDQ int8 of the bare network, with the settings of train/quantize.py,
    calibrated on 8 synthetic photos."""
    inputs = [network_input(generate_photo(100 + i, (size, size)).rgb) for i in range(8)]
    with tempfile.TemporaryDirectory(prefix="perf-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_qdq(prepared, out, NetworkReader(inputs))


# ---- network latency, FLOPs and peak


def network_input(rgb: np.ndarray) -> np.ndarray:
    """A uint8 HxWx3 photo as the bare network's 1x3xHxW float32 input (0..255)."""
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32)


def count_gflop(net: torch.nn.Module, size: int) -> float:
    """2 x the multiply-adds of every Conv2d, ConvTranspose2d and Linear at 1x3xSxS."""
    macs = 0

    def hook(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            macs += output.numel() * per_output
        elif isinstance(module, torch.nn.ConvTranspose2d):
            per_input = module.out_channels // module.groups * math.prod(module.kernel_size)
            macs += inputs[0].numel() * per_input
        else:
            macs += output.numel() * module.in_features

    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear)
    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, kinds)]
    with torch.no_grad():
        net(torch.zeros(1, 3, size, size))
    for handle in handles:
        handle.remove()
    return 2 * macs / 1e9


def ort_session(path: Path | bytes, threads: int) -> ort.InferenceSession:
    """A CPU session with the options `dermaseg plan` uses."""
    source = str(path) if isinstance(path, Path) else path
    return ort.InferenceSession(
        source, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def matmul_model(n: int) -> bytes:
    """An ONNX model computing a @ b for two n x n float32 inputs."""
    spec = [onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, [n, n]) for x in "abc"]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul", spec[:2], spec[2:]
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)])
    model.ir_version = 10
    return model.SerializeToString()


def numpy_matmul_seconds(n: int, threads: int) -> float:
    """One n^3 float32 product by numpy's BLAS, in a fresh process limited to `threads`."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(
        [sys.executable, "-c", NUMPY_MATMUL, str(n)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip())


def practical_peak(n: int, threads: int, repeats: int) -> dict:
    """Median GFLOP/s of an n x n fp32 matrix product: numpy BLAS and ORT MatMul, alternating."""
    session = ort_session(matmul_model(n), threads)
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    feed = {"a": a, "b": a.T.copy()}
    session.run(None, feed)
    times: dict[str, list[float]] = {"numpy_blas": [], "ort_matmul": []}
    for _ in range(repeats):
        times["numpy_blas"].append(numpy_matmul_seconds(n, threads))
        started = time.perf_counter()
        session.run(None, feed)
        times["ort_matmul"].append(time.perf_counter() - started)
    flop = 2 * n**3 / 1e9
    peak = {f"{k}_gflops": flop / statistics.median(v) for k, v in times.items()}
    return {"matrix": n, **peak, "practical_gflops": max(peak.values())}


def network_latency(
    net: torch.nn.Module, models: dict[str, Path], size: int, threads: int, repeats: int
) -> dict:
    """Median ms of eager torch, each ONNX model on one photo and an ORT MatMul, interleaved."""
    pixels = network_input(generate_photo(1, (size, size)).rgb)
    tensor, feed = torch.from_numpy(pixels), {"pixels": pixels}
    sessions = {name: ort_session(path, threads) for name, path in models.items()}
    runs: dict[str, Callable[[], object]] = {"torch_eager": lambda: net(tensor)}
    runs.update({name: lambda s=session: s.run(None, feed) for name, session in sessions.items()})
    matmul = ort_session(matmul_model(PEAK_N), threads)
    a = np.random.default_rng(0).random((PEAK_N, PEAK_N), dtype=np.float32)
    runs["ort_matmul"] = lambda: matmul.run(None, {"a": a, "b": a})
    with torch.no_grad():
        row = {"size": size, **{f"{k}_ms": v for k, v in median_ms(runs, repeats).items()}}
    row["ort_matmul_gflops"] = 2 * PEAK_N**3 / 1e9 / (row.pop("ort_matmul_ms") / 1000)
    if "ort_int8" in sessions:
        fp32, int8 = (sessions[k].run(None, feed)[0].argmax(1) for k in ("ort_fp32", "ort_int8"))
        row["int8_argmax_agreement"] = float((fp32 == int8).mean())
    return row


def network_row(
    net: torch.nn.Module,
    folder: Path,
    size: int,
    threads: int,
    repeats: int,
    skip_int8: bool,
    peak: dict,
) -> dict:
    """Latency, GFLOP, GFLOP/s and fraction of peak of the network at SxS (exports cached in
    `folder`). The peak is the ORT MatMul timed among these runs, times the ratio of the
    better of numpy BLAS and ORT MatMul to ORT MatMul (`peak`, measured alternating)."""
    fp32 = cached(folder / f"net-fp32-{size}.onnx", lambda p: network_only_onnx(net, size, p))
    models = {"ort_fp32": fp32}
    if not skip_int8:
        models["ort_int8"] = cached(
            folder / f"net-int8-{size}.onnx", lambda p: quantize_network(fp32, p, size)
        )
    row = network_latency(net, models, size, threads, repeats)
    row["gflop"] = count_gflop(net, size)
    row["peak_gflops"] = row["ort_matmul_gflops"] * peak["practical_gflops"]
    row["peak_gflops"] /= peak["ort_matmul_gflops"]
    for name in ("torch_eager", *models):
        row[f"{name}_gflops"] = row["gflop"] / (row[f"{name}_ms"] / 1000)
        row[f"{name}_of_peak"] = row[f"{name}_gflops"] / row["peak_gflops"]
    return row


# ---- planning photos


def write_photo(seed: int, path: Path) -> Path:
    """A synthetic photo (with marker) drawn at 1008x756, upscaled to 4032x3024, JPEG q90."""
    small = generate_photo(seed, (PHOTO_SIZE[0] // 4, PHOTO_SIZE[1] // 4), with_marker=True)
    large = Image.fromarray(small.rgb).resize(PHOTO_SIZE, Image.Resampling.BICUBIC)
    large.save(path, quality=90)
    return path


def plan_one(models: dict[str, Path], photo: Path, out: Path, threads: int, runs: int) -> dict:
    """Median seconds per stage and in total over `runs` plans of one photo (after a warm-up)
    with each model, the models alternating run by run."""
    planners = {
        name: BatchPlanner(out / name, model=PlanningModel(path, threads), overwrite=True)
        for name, path in models.items()
    }
    for planner in planners.values():
        planner.plan_photo(photo, "warmup")
    laps: dict[str, list] = {name: [] for name in planners}
    for _ in range(runs):
        for name, planner in planners.items():
            laps[name].append(planner.plan_photo(photo, "photo").seconds)
    result: dict = {"runs": runs}
    for name, runs_of in laps.items():
        medians = {stage: statistics.median(lap[stage] for lap in runs_of) for stage in STAGES}
        medians["outputs"] = statistics.median(
            sum(lap[stage] for stage in OUTPUT_STAGES) for lap in runs_of
        )
        medians["total"] = statistics.median(sum(lap.values()) for lap in runs_of)
        result[name] = {"median_s": medians}
    return result


def plan_models(checkpoint: Path, folder: Path, size: int, data: Path | None) -> dict:
    """The fp32 planning model and its int8 sibling (`export --int8`, limit 1.0 so it is always
    written; the guard's report, with the shipped 0.01 limit in mind, is printed), cached.
    Calibration data: `data`, else the checkpoint's training data, else synthetic photos."""
    fp32 = folder / f"plan-{size}.onnx"
    if not fp32.exists() or not int8_sibling(fp32).exists():
        print(f"  exporting {fp32.name} with --int8 ...", flush=True)
        trained_on = load_checkpoint(checkpoint).meta["config"].get("data")
        if data is None and trained_on and Path(trained_on).exists():
            data = Path(trained_on)  # the checkpoint's own data: its train split calibrates
        if data is None:
            data = folder / "synthetic-calibration"
            if not data.exists():
                generate_dataset(data, n=40, size=512, seed=7)
        report = export_checkpoint(
            checkpoint, fp32, working_size=size, overwrite=True, int8=True, data=data,
            max_dice_drop=1.0,
        )  # fmt: skip
        (folder / f"plan-{size}.int8-guard.json").write_text(json.dumps(report.int8, indent=1))
    guard = json.loads((folder / f"plan-{size}.int8-guard.json").read_text())
    return {"fp32": fp32, "int8": int8_sibling(fp32), "guard": guard}


def peak_rss(model_path: Path, photo: Path, out: Path, threads: int) -> dict:
    """Peak RSS of a fresh process that imports dermaseg.infer.batch and plans `photo` once."""
    args = [str(model_path), str(photo), str(out), str(threads)]
    done = subprocess.run(
        [sys.executable, "-c", RSS_PROBE, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def plan_folder(model_path: Path, photos: list[Path], out: Path, threads: int) -> dict:
    """Photos per minute when one BatchPlanner plans the whole folder."""
    planner = BatchPlanner(out, model=PlanningModel(model_path, threads), overwrite=True)
    started = time.perf_counter()
    result = planner.run(photos)
    seconds = time.perf_counter() - started
    return {
        "photos": len(photos),
        "failed": len(result.failed),
        "seconds": seconds,
        "photos_per_minute": 60 * len(result.planned) / seconds,
    }


# ---- training


def train_throughput(config: dict, work: Path) -> dict:
    """The recipe's training images/s on synthetic photos: one epoch (warm-up included), CPU,
    encoder not frozen."""
    data = work / "train-data"
    generate_dataset(data, n=TRAIN_PHOTOS, size=256, seed=0)
    recipe = work / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(config), encoding="utf-8")
    overrides = [
        f"data={data}",
        f"runs_dir={work / 'runs'}",
        "name=perf",
        "model.encoder_weights=null",
        "model.freeze_encoder_epochs=0",
        "train.epochs=1",
        "train.device=cpu",
        "train.overlay_every=0",
        "train.early_stop_patience=0",
    ]
    run_config = load_run_config(str(recipe), overrides)
    result = train(run_config, show_progress=False)
    with (result.run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return {
        "input_size": run_config.input.size,
        "batch_size": run_config.train.batch_size,
        "workers": run_config.train.workers,
        "train_photos": round(
            float(rows[0]["train_images_per_s"]) * float(rows[0]["train_seconds"])
        ),
        "images_per_s": float(rows[0]["train_images_per_s"]),
    }


# ---- report


def print_table(report: dict) -> None:
    print()
    print(cpu_line(report["cpu"]))
    if "peak" in report:
        print_network(report)
    print_plan(report)


def print_network(report: dict) -> None:
    peak = report["peak"]
    print(f"\npractical fp32 peak ({peak['matrix']}^2 matmul): numpy BLAS ", end="")
    print(f"{peak['numpy_blas_gflops']:.1f}, ORT MatMul {peak['ort_matmul_gflops']:.1f} GFLOP/s")
    print(
        f"\n{'network (batch 1)':<22}{'size':>6}{'GFLOP':>8}{'ms':>10}{'GFLOP/s':>10}{'% peak':>8}"
    )
    for row in report["network"]:
        for name in ("torch_eager", "ort_fp32", "ort_int8"):
            if f"{name}_ms" in row:
                ms, gflops = row[f"{name}_ms"], row[f"{name}_gflops"]
                print(
                    f"{name:<22}{row['size']:>6}{row['gflop']:>8.2f}{ms:>10.1f}"
                    f"{gflops:>10.1f}{100 * row[f'{name}_of_peak']:>7.0f}%"
                )
        print(f"{'':<22}practical peak timed with these runs: {row['peak_gflops']:.1f} GFLOP/s")
        if "int8_argmax_agreement" in row:
            print(f"{'':<22}int8 argmax agreement with fp32: {row['int8_argmax_agreement']:.4f}")


def print_plan(report: dict) -> None:
    plan = report["plan_12mp"]
    names = [n for n in ("fp32", "int8") if n in plan]
    print(f"\nplan 4032x3024 JPEG (median of {plan['runs']}, models alternating)")
    print(f"  {'stage':<17}" + "".join(f"{n:>10}" for n in names))
    for stage in (*STAGES[: -len(OUTPUT_STAGES)], "outputs", *OUTPUT_STAGES, "total"):
        print(f"  {stage:<17}" + "".join(f"{plan[n]['median_s'][stage]:>9.3f}s" for n in names))
    if "int8" in plan:
        fp32, int8 = (plan[n]["median_s"]["inference"] for n in ("fp32", "int8"))
        print(f"  inference stage fp32 / int8 = {fp32 / int8:.2f}x")
    guard = report["int8_guard"]
    if "fp32_dice" in guard:
        print(
            f"  int8 guard on {guard['validation_photos']} val photos: per-image Dice "
            f"fp32 {guard['fp32_dice']['mean']:.4f}, int8 {guard['int8_dice']['mean']:.4f} "
            f"(drop {guard['dice_drop']:+.4f}; shipped limit 0.01)"
        )
    auto = report["auto_precision"]
    print(f"  --precision auto on this CPU: {auto['precision']} ({auto['reason']})")
    if "rss" not in plan:
        return
    rss = plan["rss"]
    print(
        f"  peak RSS {rss['peak_mb']:.0f} MB (after import {rss['after_import_mb']:.0f} MB, "
        f"torch imported: {rss['torch_imported']})"
    )
    folder = report["folder"]
    print(
        f"\nfolder: {folder['photos']} photos in {folder['seconds']:.1f} s = "
        f"{folder['photos_per_minute']:.1f} photos/min ({folder['failed']} failed)"
    )
    if "train" in report:
        t = report["train"]
        print(
            f"\ntrain: {t['images_per_s']:.2f} images/s (1 epoch of {t['train_photos']} photos) "
            f"at {t['input_size']} px, batch {t['batch_size']}, {t['workers']} workers"
        )


def more_figures(
    report: dict,
    args: argparse.Namespace,
    model: Path,
    photo: Path,
    work: Path,
    config: dict,
) -> None:
    """Peak RSS, the folder and training; with the model `--precision auto` runs here."""
    threads = args.threads
    (work / "folder").mkdir()
    photos = [
        write_photo(s, work / "folder" / f"p{s:02d}.jpg") for s in range(1, FOLDER_PHOTOS + 1)
    ]
    report["plan_12mp"]["rss"] = peak_rss(model, photo, work / "rss", threads)
    report["folder"] = plan_folder(model, photos, work / "folder-out", threads)
    if not args.skip_train:
        report["train"] = train_throughput(config, work)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, nargs="?", help="a trained .safetensors")
    parser.add_argument(
        "--recipe", help="a shipped recipe, random-init (default without CHECKPOINT: cpu-lite)"
    )
    parser.add_argument("--working-size", type=int, help="default: the checkpoint's")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cache", type=Path, help="default: perf-cache next to the checkpoint")
    parser.add_argument("--skip-int8", action="store_true")
    parser.add_argument(
        "--data", type=Path, help="dataset whose train split calibrates int8 (default synthetic)"
    )
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--plan-only", action="store_true", help="only the 12-MP plan (no network, folder, train)"
    )
    parser.add_argument("--plan-runs", type=int, help="plans per model (default 7, --quick 3)")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args()
    if args.checkpoint is not None and args.recipe is not None:
        parser.error("give a CHECKPOINT or --recipe NAME (not both)")
    if args.checkpoint is None and args.recipe is None:
        args.recipe = DEFAULT_RECIPE
    return args


def main() -> None:
    args = parse_args()
    threads, quick = args.threads, args.quick
    torch.set_num_threads(threads)
    print(f"load average at start: {os.getloadavg()}; {os.cpu_count()} cores, {threads} threads")
    cpu = cpu_report()
    print(cpu_line(cpu))
    print("Other processes may share these cores: absolute times are inflated; the variants")
    print("compared alternate repetition by repetition, so their ratios stay fair.")
    if args.recipe:
        cache = args.cache or Path(tempfile.gettempdir()) / "dermaseg-perf"
        checkpoint = recipe_checkpoint(args.recipe, cache)
    else:
        checkpoint, cache = args.checkpoint, args.cache or args.checkpoint.parent / "perf-cache"
    net, meta = load_model(checkpoint)
    working_size = args.working_size or int(meta["working_size"])
    sha = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:12]
    folder = cache / sha
    folder.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "checkpoint": str(checkpoint),
        "recipe": meta["config"]["name"],
        "sha256_12": sha,
        "working_size": working_size,
        "threads": threads,
        "quick": quick,
        "loadavg_start": os.getloadavg(),
        "cpu": cpu,
    }
    plans = plan_models(checkpoint, folder, working_size, args.data)
    plan_model = plans["fp32"]
    auto = choose_precision(plan_model, "auto")
    report["auto_precision"] = {"precision": auto.precision, "reason": auto.reason}
    report["int8_guard"] = plans["guard"]
    if not args.plan_only:
        report["peak"] = peak = practical_peak(PEAK_N, threads, 2 if quick else 3)
        report["network"] = [
            network_row(net, folder, size, threads, 5 if quick else 20, args.skip_int8, peak)
            for size in sorted({512, working_size})
        ]
    with tempfile.TemporaryDirectory(prefix="dermaseg-perf-") as tmp:
        work = Path(tmp)
        photo = write_photo(0, work / "photo.jpg")
        models = (
            {"fp32": plan_model} if args.skip_int8 else {"fp32": plan_model, "int8": plans["int8"]}
        )
        runs = args.plan_runs or (3 if quick else 7)
        report["plan_12mp"] = plan_one(models, photo, work / "out", threads, runs)
        if not args.plan_only:
            more_figures(report, args, auto.path, photo, work, meta["config"])
    report["loadavg_end"] = os.getloadavg()
    print_table(report)
    print(f"\nload average at end: {report['loadavg_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
