"""`dermaseg plan`: the clinic's command (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, error_line, print_json, progress_bar
from dermaseg.errors import DermasegError
from dermaseg.fileio import write_text
from dermaseg.infer.batch import BatchResult, CalibrationSettings, Planner
from dermaseg.infer.inputs import collect_photos
from dermaseg.infer.outputs import output_paths
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.precision import choose_precision
from dermaseg.infer.procedure_plan import procedure_options
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
                "warnings": list(item.warnings),
            }
            for item in result.planned
        ],
        "failed": [{"photo": str(path), "error": message} for path, message in result.failed],
    }


def _print_summary(result: BatchResult) -> None:
    table = Table("photo", "procedure", "calibration", "patches", "treatable area", "warnings")
    for item in result.planned:
        table.add_row(
            escape(item.path.name),
            item.procedure or "-",
            item.calibration,
            str(item.treatable_patches),
            area_text(item.treatable_area_px, item.treatable_area_mm2),
            escape("; ".join(item.warnings)) or "-",
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


def open_model(path: Path, precision: str, threads: int) -> PlanningModel:
    """The planning model to run for `--precision`, which says why it was chosen."""
    choice = choose_precision(path, precision)
    return PlanningModel(choice.path, threads=threads, choice=choice)


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
        "(default: chosen from the classes found).",
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
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="auto (int8 when the CPU has AVX512-VNNI, AVX-VNNI or Arm dotprod and MODEL.int8.onnx "
        "exists beside the model), fp32 or int8.",
    ),
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
        model=None if mask else open_model(model, precision, threads),
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
