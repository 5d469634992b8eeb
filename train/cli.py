"""`dermaseg train` and `dermaseg eval`; torch is imported only when a command runs."""

from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, out_console, print_json
from dermaseg.errors import DermasegError, shown
from dermaseg.extras import require_train_extra
from dermaseg.fileio import usable_folder
from dermaseg.validation import WORKING_SIZE, finite

MAX_FOLDS = 100  # K-fold cross-validation trains K models


def train_command(
    overrides: list[str] = typer.Argument(None, help="Overrides such as train.epochs=5 data=DIR."),
    config: str = typer.Option(
        None,
        "--config",
        "-c",
        help="Config YAML or shipped recipe name "
        "(auto, cpu-lite, gpu-lite2, gpu-resnet34, synthetic-demo).",
    ),
    resume: Path = typer.Option(
        None,
        "--resume",
        help="Run folder to resume (its config.yaml "
        "and weights/last); overrides may extend train.epochs.",
    ),
    folds: int = typer.Option(
        0,
        "--folds",
        min=0,
        max=MAX_FOLDS,
        help="Train K models over a seeded K-fold split; report mean and standard deviation.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Fine-tune a U-Net from a YAML recipe.

    Every run writes runs/<name>/: config.yaml, metrics.csv (with where each epoch's time
    went), curves.png, overlays/ and weights/{best,last}.safetensors. Several processes or GPUs:
    torchrun --nproc_per_node=K -m dermaseg train --config ...
    """
    require_train_extra("train")
    from dermaseg.train.config import load_run_config
    from dermaseg.train.trainer import train

    overrides = overrides or []
    if resume is not None:
        if folds:
            raise DermasegError("--resume and --folds cannot be combined")
        if not (resume / "config.yaml").is_file():
            raise DermasegError(f"{shown(resume)}: not a run folder (no config.yaml)")
        run_config = load_run_config(str(resume / "config.yaml"), overrides, plan_auto=False)
        results = [train(run_config, resume_dir=resume)]
    elif config is None:
        raise DermasegError("give --config NAME|FILE (or --resume RUN_DIR)")
    else:
        run_config = load_run_config(config, overrides)
        results = _train_folds(run_config, folds) if folds else [train(run_config)]
    summary = _summary(results)
    if as_json:
        print_json(summary)
    elif folds:  # each run said where its files are when it ended (trainer._say_done)
        err_console.print(
            f"{folds}-fold mean Dice {summary['folds']['mean_dice']['mean']:.4f}"
            f" ± {summary['folds']['mean_dice']['std']:.4f}"
        )
    if any(r.interrupted for r in results):
        raise typer.Exit(130)


def _train_folds(run_config, folds: int) -> list:
    from dermaseg.datasets.dataset import Dataset
    from dermaseg.datasets.splits import kfold_splits
    from dermaseg.fileio import photo_sha256
    from dermaseg.train.trainer import train

    if folds < 2:
        raise DermasegError("--folds needs K >= 2")
    dataset = Dataset.open(run_config.data)
    if folds > len(dataset.records):
        raise DermasegError(
            f"--folds {folds} needs at least {folds} photos; the dataset has {len(dataset.records)}"
        )
    digests = {r.id: photo_sha256(r.image_path) for r in dataset.records}
    split = dataset.config.split
    results = []
    for fold in range(folds):
        assignment = kfold_splits(dataset.records, digests, folds, fold, split.seed, split.test)
        fold_config = run_config.model_copy(update={"name": f"{run_config.name}-fold{fold}"})
        results.append(train(fold_config, splits=assignment))
    return results


def _summary(results: list) -> dict:
    runs = [
        {
            "run_dir": str(r.run_dir),
            "epochs": r.epochs_done,
            "interrupted": r.interrupted,
            "best_mean_dice": (r.best_metrics or {}).get("mean_dice", r.best_metric),
            "best_fixed_mean_dice": r.best_metric,  # what picked the best epoch
            "best_metrics": r.best_metrics,
        }
        for r in results
    ]
    summary: dict = {"runs": runs}
    if len(results) > 1:
        per_fold = [r.best_metrics for r in results if r.best_metrics]
        keys = ["mean_dice", "fixed_mean_dice", "mean_iou", "mean_boundary_f1"]
        per_class = list(per_fold[0]["per_class"]) if per_fold else []
        stats = {k: _mean_std([m.get(k) for m in per_fold]) for k in keys}
        for name in per_class[1:]:
            stats[f"dice_{name}"] = _mean_std([m["per_class"][name]["dice"] for m in per_fold])
        summary["folds"] = stats
    return summary


def _mean_std(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and not math.isnan(v)]
    if not finite:
        return {"mean": math.nan, "std": math.nan, "n": 0}
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / len(finite))
    return {"mean": mean, "std": std, "n": len(finite)}


def eval_command(
    model: Path = typer.Argument(
        ..., help="Checkpoint (weights/best.safetensors or .json) or exported MODEL.onnx."
    ),
    data: Path = typer.Option(..., "--data", help="Dataset folder or YAML."),
    split: str = typer.Option("test", "--split", help="train, val, test, or all."),
    per_image: Path = typer.Option(
        None,
        "--per-image",
        help="Write per-photo results, worst first, to this CSV and to the same name .json.",
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing --per-image files."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Dice, IoU, boundary F1, area error and hallucinated area of a model on a dataset split,
    per class, per photo (worst first) and by skin-tone group (ITA°).

    A checkpoint is scored at its working size; an exported .onnx at each photo's full size,
    after its learned post-processing. Area error % is over photos that hold the class;
    hallucinated area % is the predicted area on photos without it (over-treatment), as % of
    the photo. Boundary F1 tolerance: 0.5 % of the photo diagonal.
    """
    require_train_extra("eval")
    console = Console(soft_wrap=True, highlight=False)  # results go to stdout

    from dermaseg.fileio import write_json, write_text
    from dermaseg.train.evaluate import evaluate_checkpoint, evaluate_onnx, per_image_csv

    if per_image is not None:  # refused before the evaluation, not after it
        from dermaseg.infer.outputs import check_none_exist

        usable_folder(per_image.parent, "--per-image")
        check_none_exist({"csv": per_image, "json": per_image.with_suffix(".json")}, overwrite)
    if model.suffix.lower() == ".onnx":
        metrics = evaluate_onnx(model, data, split)
    else:
        metrics = evaluate_checkpoint(model, data, split)
    if per_image is not None:
        write_text(per_image, per_image_csv(metrics["per_image"]), overwrite=overwrite)
        write_json(per_image.with_suffix(".json"), metrics["per_image"], overwrite=overwrite)
    if as_json:
        print_json(metrics)
        return
    table = Table(
        "class",
        "Dice",
        "IoU",
        "boundary F1",
        "area error %",
        "hallucinated %",
        "pixels",
        title=f"{model} on {data} ({split}, {metrics['photos']} photos)",
        caption="area error: photos with the class; hallucinated: predicted area on photos "
        "without it (% of photo, photos with any / without the class)",
    )
    for name, values in metrics["per_class"].items():
        table.add_row(
            name,
            f"{values['dice']:.4f}",
            f"{values['iou']:.4f}",
            f"{values['boundary_f1']:.4f}",
            f"{values['area_error_pct']:.2f}",
            f"{values['hallucinated_area_pct']:.3f} "
            f"({values['photos_hallucinated']}/{values['photos_without_class']})",
            f"{values['support_px']:,}",
        )
    console.print(table)
    tones = Table("skin tone (ITA°)", "photos", "mean Dice (fixed classes)")
    for group, values in metrics["by_skin_tone"].items():
        tones.add_row(group, str(values["photos"]), f"{values['mean_fixed_dice']:.4f}")
    console.print(tones)
    worst = metrics["per_image"][:5]
    console.print(
        "worst photos: " + ", ".join(f"{r['photo']} {r['fixed_dice']:.3f}" for r in worst)
    )
    console.print(
        f"mean Dice {metrics['mean_dice']:.4f}  on the fixed class set "
        f"({', '.join(metrics['fixed_classes'])}) {metrics['fixed_mean_dice']:.4f}  "
        f"mean IoU {metrics['mean_iou']:.4f}"
    )


def export_command(
    checkpoint: Path = typer.Argument(..., help="Checkpoint (weights/best.safetensors or .json)."),
    out: Path = typer.Option(
        None,
        "--out",
        "-o",
        help="Output .onnx (default: next to the checkpoint's run folder, <run>/model.onnx).",
    ),
    working_size: int = typer.Option(
        None,
        "--working-size",
        min=WORKING_SIZE[0],
        max=WORKING_SIZE[1],
        help="Longer side the network sees (multiple of 32); default: the training size.",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write an int8 sibling (MODEL.int8.onnx; static QDQ calibrated on the train "
        "split) when its Dice on the val split holds (see --max-dice-drop).",
    ),
    data: Path = typer.Option(
        None,
        "--data",
        "--calibration",
        help="Dataset whose val split fits the confidence temperature and the post-processing "
        "(and checks int8); default: the data the checkpoint was trained on, if present.",
    ),
    tta: str = typer.Option(
        None,
        "--tta",
        help="Test-time augmentation inside the graph: none, flip (left-right mirror: twice "
        "the inference time) or mirror (both axes: four times); default: the recipe's "
        "export.tta.",
    ),
    max_dice_drop: float = typer.Option(
        0.01,
        "--max-dice-drop",
        min=0.0,
        max=1.0,
        callback=finite,
        help="Largest allowed fall, fp32 to int8, of the mean per-image Dice on the fixed "
        "class set (classes with support in the val truth).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON."),
) -> None:
    """Export a checkpoint as a self-contained planning ONNX model, verified against PyTorch."""
    require_train_extra("export")
    from dataclasses import asdict

    from dermaseg.train.export import export_checkpoint
    from dermaseg.train.planning_graph import TTA_FLIPS

    if out is None:
        stem = checkpoint.with_suffix("") if checkpoint.suffix else checkpoint
        out = stem.parent.parent / "model.onnx"
    if tta not in (None, "none", *TTA_FLIPS):
        raise DermasegError(f"--tta {tta}: use none, {' or '.join(TTA_FLIPS)}")
    usable_folder(out.parent, "--out")  # before minutes of export, not after
    if out.is_dir():
        raise DermasegError(f"--out {shown(out)}: is a folder; give the model file's path")
    report = export_checkpoint(
        checkpoint,
        out,
        working_size,
        overwrite,
        int8=int8,
        data=data,
        tta=tta,
        max_dice_drop=max_dice_drop,
    )
    if as_json:
        print_json(asdict(report))
        return
    worst = min(row["mask_agreement"] for row in report.parity)
    out_console.print(
        f"Wrote {report.path} (fp32, working size {report.working_size}, TTA {report.tta}); "
        f"export {report.export_seconds:.1f}s, contract invariants hold, worst mask agreement "
        f"with PyTorch {worst:.4%} (pixels where the model is not at a near-tie)"
    )
    calibration = report.confidence_calibration or {}
    if calibration.get("method") == "temperature":
        out_console.print(
            f"confidence: temperature {calibration['temperature']:.3f} fitted on "
            f"{calibration['photos']} val photos, ECE {calibration['ece_before']:.4f} -> "
            f"{calibration['ece_after']:.4f}"
        )
    else:
        out_console.print(f"confidence: not calibrated ({calibration.get('reason')})")
    if report.postprocess:
        rule = report.postprocess
        out_console.print(
            f"post-processing (dermaseg.postprocess): min component fraction "
            f"{rule['min_component_fraction']}, largest component only "
            f"{rule.get('largest_only') or 'no class'}, fill holes {rule['fill_holes']}; "
            f"val mean Dice "
            f"{rule['mean_dice_before']:.4f} -> {rule['mean_dice_after']:.4f}"
        )
    if report.int8 is not None and "refused" in report.int8:
        out_console.print(f"[yellow]int8 not written[/]: {escape(report.int8['refused'])}")
    elif report.int8 is not None:
        out_console.print(
            f"Wrote {report.int8['path']} (int8): mean per-image Dice on "
            f"{', '.join(report.int8['fixed_classes'])} {report.int8['int8_dice']['mean']:.4f} "
            f"vs fp32 {report.int8['fp32_dice']['mean']:.4f} on "
            f"{report.int8['validation_photos']} val photos (limit {report.int8['max_dice_drop']})"
        )
