"""`dermaseg plan`: the clinic's command (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, error_line, print_json, progress_bar
from dermaseg.errors import DermasegError
from dermaseg.fileio import write_json, write_text
from dermaseg.infer.batch import BatchResult, CalibrationSettings, Planner
from dermaseg.infer.inputs import collect_photos
from dermaseg.infer.outputs import check_free, output_paths
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.procedure_plan import procedure_options
from dermaseg.infer.rank import merged_coco, rank_photos, ranking_csv
from dermaseg.infer.report_html import area_text, render_index
from dermaseg.infer.schema import plan_json_schema
from dermaseg.infer.session import PlanningModel


def _summary(result: BatchResult, out: Path) -> dict:
    return {
        "planned": [
            {
                "photo": str(item.path),
                "outputs": {k: str(v) for k, v in output_paths(out, item.stem).items()},
                "calibration": item.calibration,
                "mm_per_pixel": item.mm_per_pixel,
                "patches": item.patches,
                "treatable_patches": item.treatable_patches,
                "treatable_area_px": item.treatable_area_px,
                "treatable_area_mm2": item.treatable_area_mm2,
                "procedure": item.procedure,
                "needs_review": item.needs_review,
                "review": [{"code": r.code, "text": r.text} for r in item.review],
                "warnings": [{"code": w.code, "text": w.text} for w in item.warnings],
            }
            for item in result.planned
        ],
        "failed": [{"photo": str(path), "error": message} for path, message in result.failed],
    }


def _print_summary(result: BatchResult) -> None:
    table = Table()
    for name in ("photo", "procedure", "calibration", "patches", "treatable area"):
        table.add_column(name, overflow="fold")
    table.add_column("review", overflow="fold", min_width=16)  # codes whole, one per line
    table.add_column("warnings", overflow="fold", min_width=16)
    for item in sorted(result.planned, key=lambda i: not i.needs_review):
        table.add_row(
            escape(item.path.name),
            item.procedure or "-",
            item.calibration,
            str(item.treatable_patches),
            area_text(item.treatable_area_px, item.treatable_area_mm2),
            "[bold red]check[/]\n" + escape("\n".join(r.code for r in item.review))
            if item.needs_review
            else "-",
            escape("\n".join(w.code for w in item.warnings)) or "-",
        )
    if result.planned:
        err_console.print(table)
    for _, message in result.failed:
        error_line(message)
    err_console.print(f"{len(result.planned)} planned, {len(result.failed)} failed")


def _write_index(out: Path, result: BatchResult, overwrite: bool) -> Path:
    index = out / "index.html"
    entries = [(i, output_paths(out, i.stem)["report"]) for i in result.planned]
    failures = [{"photo": p.name, "error": m} for p, m in result.failed]
    write_text(index, render_index(entries, failures, out), overwrite=overwrite)
    return index


def plan_command(
    photos: list[Path] = typer.Argument(..., help="Photos and/or folders of photos."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Planning model (.onnx)."),
    mask: list[Path] | None = typer.Option(
        None, "--mask", help="Plan from a mask drawn by a person (one per photo; no model)."
    ),
    out: Path = typer.Option(Path("plans"), "--out", "-o", help="Output folder."),
    mm_per_pixel: float | None = typer.Option(
        None, "--mm-per-pixel", min=0.0, help="Scale, when known (skips marker detection)."
    ),
    marker_mm: float = typer.Option(20.0, "--marker-mm", min=0.1, help="Marker side length."),
    marker_dict: str = typer.Option("DICT_4X4_50", "--marker-dict", help="ArUco dictionary."),
    marker_id: int | None = typer.Option(None, "--marker-id", help="Use only this marker id."),
    no_marker: bool = typer.Option(False, "--no-marker", help="Do not look for a marker."),
    require_marker: bool = typer.Option(
        False, "--require-marker", help="A photo without a marker fails instead of a warning."
    ),
    procedure: str | None = typer.Option(
        None,
        "--procedure",
        help="vitiligo-camouflage, scar-camouflage, smp-thinning or smp-scarring-alopecia "
        "(default: the one with the largest treatable area).",
    ),
    clinic_config: Path | None = typer.Option(
        None, "--clinic-config", help="YAML with the clinic's procedure numbers (see README)."
    ),
    previous: Path | None = typer.Option(
        None, "--previous", help="The patient's previous plan JSON: area change (stability)."
    ),
    min_patch_mm2: float | None = typer.Option(
        None,
        "--min-patch-mm2",
        min=0.0,
        help="Ignore smaller patches for treatment (default: the procedure's).",
    ),
    min_patch_px: int = typer.Option(
        0, "--min-patch-px", min=0, help="Ignore patches under this many pixels."
    ),
    margin_mm: float | None = typer.Option(
        None,
        "--margin-mm",
        min=0.0,
        help="Blending margin grown around treatable patches (default: the procedure's).",
    ),
    simplify_px: float = typer.Option(
        1.0, "--simplify-px", min=0.0, help="Outline simplification tolerance."
    ),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0: all cores)."),
    full_resolution: bool = typer.Option(
        False,
        "--full-resolution",
        help="Analyse large JPEGs at full size (by default they are decoded at 1/2..1/8, still "
        "at least twice the model's working size).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the batch summary as JSON."),
    schema: bool = typer.Option(False, "--schema", help="Print the plan JSON Schema and exit."),
) -> None:
    """Plan treatment from photos: outlines, areas, tones, overlay, JSON and HTML report.

    Exit code 0 when every photo was planned, 1 when some failed (the others are still
    written), 2 when nothing could start (for example an unusable model).
    """
    if schema:
        print_json(plan_json_schema())
        return
    paths = collect_photos(photos)
    if not paths:
        raise DermasegError("no photos found in " + ", ".join(str(p) for p in photos))
    if mask and len(mask) != len(paths):
        raise DermasegError(f"--mask given {len(mask)} times for {len(paths)} photos")
    if not mask and model is None:
        raise DermasegError("give --model MODEL.onnx, or --mask MASK.png to plan from a mask")
    if previous is not None and len(paths) != 1:
        raise DermasegError(f"--previous compares one photo, but {len(paths)} were given")
    procedures = procedure_options(procedure, clinic_config, previous, min_patch_mm2, margin_mm)
    planner = Planner(
        out,
        model=None if mask else PlanningModel(model, threads=threads),
        calibration=CalibrationSettings(
            mm_per_pixel=mm_per_pixel or None,
            detect_marker=not no_marker,
            marker_mm=marker_mm,
            marker_dict=marker_dict,
            marker_id=marker_id,
            require_marker=require_marker,
        ),
        settings=PlanSettings(min_patch_area_px=min_patch_px, simplify_px=simplify_px),
        procedures=procedures,
        overwrite=overwrite,
        full_resolution=full_resolution,
    )
    with progress_bar("Planning", len(paths)) as advance:
        result = planner.run(paths, mask or None, progress=advance)
    if len(paths) > 1 and result.planned:
        index = _write_index(out, result, overwrite=True)
        err_console.print(f"Report index: {escape(str(index))}")
    elif result.planned:
        report = output_paths(out, result.planned[0].stem)["report"]
        err_console.print(f"Report: {escape(str(report))}")
    if as_json:
        print_json(_summary(result, out))
    _print_summary(result)
    if result.failed:
        raise typer.Exit(1)


def rank_command(
    folder: Path = typer.Argument(..., help="Folder of unlabelled photos (or photo files)."),
    model: Path = typer.Option(..., "--model", "-m", help="Planning model (.onnx)."),
    out: Path = typer.Option(Path("ranked"), "--out", "-o", help="Output folder."),
    threads: int = typer.Option(0, "--threads", min=0, help="CPU threads (0: all cores)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
) -> None:
    """Order unlabelled photos for labelling, most uncertain first (active learning).

    Writes OUT/ranking.csv (mean per-pixel entropy, so large photos are not favoured; see
    `dermaseg.infer.rank` for how it is estimated from the model's confidence) and
    OUT/pre_annotations.coco.json (the model's patches as COCO RLE, file names relative to
    FOLDER) to import into CVAT or Label Studio with the photos.
    """
    paths = collect_photos([folder])
    if not paths:
        raise DermasegError(f"no photos found in {folder}")
    files = {"csv": out / "ranking.csv", "coco": out / "pre_annotations.coco.json"}
    check_free(files, overwrite)
    planning_model = PlanningModel(model, threads=threads)
    with progress_bar("Ranking", len(paths)) as advance:
        ranked, failed = rank_photos(planning_model, folder, paths, progress=advance)
    out.mkdir(parents=True, exist_ok=True)
    write_text(files["csv"], ranking_csv(ranked), overwrite=overwrite)
    write_json(files["coco"], merged_coco(ranked, model.name), overwrite=overwrite)
    if as_json:
        print_json(
            {
                "ranking": [
                    {
                        "photo": r.name,
                        "mean_entropy": r.mean_entropy,
                        "mean_least_confidence": r.mean_least_confidence,
                        "patches": r.patches,
                    }
                    for r in ranked
                ],
                "outputs": {k: str(v) for k, v in files.items()},
                "failed": [{"photo": str(p), "error": m} for p, m in failed],
            }
        )
    else:
        table = Table("rank", "photo", "mean entropy", "1 - confidence", "patches")
        for i, r in enumerate(ranked[:20], start=1):
            table.add_row(
                str(i),
                escape(r.name),
                f"{r.mean_entropy:.4f}",
                f"{r.mean_least_confidence:.4f}",
                str(r.patches),
            )
        err_console.print(table)
    for _, message in failed:
        error_line(message)
    err_console.print(
        f"{len(ranked)} ranked, {len(failed)} failed: {escape(str(files['csv']))}, "
        f"{escape(str(files['coco']))}"
    )
    if failed:
        raise typer.Exit(1)
