"""`dermaseg plan`: the clinic's command (torch-free)."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from dermaseg.console import err_console, error_line, out_console, print_json, progress_bar
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import DermasegError, shown
from dermaseg.fileio import usable_folder, write_json, write_text
from dermaseg.infer.batch import (
    BatchPlanner,
    BatchResult,
    CalibrationSettings,
    PlanSummary,
    index_entries,
    plan_options,
)
from dermaseg.infer.calibration import dictionary_names
from dermaseg.infer.inputs import collect_photos
from dermaseg.infer.mask_inputs import pair_masks, parse_mask_values
from dermaseg.infer.meta import meta_source, parse_meta_options
from dermaseg.infer.outputs import INDEX, check_none_exist, index_thumbnail, output_paths
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.precision import choose_precision
from dermaseg.infer.procedure_plan import procedure_options
from dermaseg.infer.rank import merged_coco, rank_photos, ranking_csv
from dermaseg.infer.report_html import area_text, render_index
from dermaseg.infer.schema import plan_json_schema
from dermaseg.infer.session import PlanningModel
from dermaseg.validation import finite, marker_mm_option, mm_per_pixel_option, threads_option

# Bounds of the numeric options, checked once before any photo (and shown in --help).
MAX_MARKER_ID = 999  # above the largest predefined ArUco dictionary (DICT_ARUCO_MIP_36h12: 250)
MAX_PATCH_MM2 = 1e6
MAX_PATCH_PX = 1_000_000_000
MAX_MARGIN_MM = 50.0
MAX_SIMPLIFY_PX = 100.0
FLAG_WORDS = {"true", "false", "yes", "no", "on", "off"}  # `--no-marker true`: not a photo


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
        "skipped": [{"photo": str(path), "reason": message} for path, message in result.skipped],
    }


def _row_name(item: PlanSummary) -> str:
    """The photo's name, and the name its outputs got where that differs (a repeated name, or
    a subfolder with --recursive)."""
    name = shown(item.path.name)
    if item.stem != item.path.stem:
        name += f" -> {shown(item.stem)}"
    return name


def _summary_table(rows: list[PlanSummary], with_warnings: bool) -> Table:
    """Names, procedures and figures whole; review and warning codes one per line, folded if
    need be."""
    whole = [
        [
            _row_name(item),
            item.procedure or "-",
            item.calibration,
            str(item.treatable_patches),
            area_text(item.treatable_area_px, item.treatable_area_mm2),
        ]
        for item in rows
    ]
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    for i, name in enumerate(("photo", "procedure", "calib.", "patches", "area")):
        table.add_column(
            name,
            no_wrap=True,
            min_width=max([len(name)] + [len(cells[i]) for cells in whole]),
            justify="right" if name == "patches" else "left",
        )
    table.add_column("review", overflow="fold", min_width=8)
    if with_warnings:
        table.add_column("warnings", overflow="fold", min_width=12)
    for item, texts in zip(rows, whole, strict=True):
        cells = [
            *map(escape, texts),
            "[bold red]check[/]\n" + escape("\n".join(r.code for r in item.review))
            if item.needs_review
            else "-",
        ]
        if with_warnings:
            cells.append(escape("\n".join(w.code for w in item.warnings)) or "-")
        table.add_row(*cells)
    return table


def _print_summary(result: BatchResult, console: Console) -> None:
    """One row per planned photo, needing review first, then each distinct warning once with
    its text and the photos it concerns, then failures (on stderr) and the counts. Where the
    terminal is too narrow for a warnings column, the warnings are only listed under the table."""
    rows = sorted(result.planned, key=lambda i: not i.needs_review)
    table = _summary_table(rows, with_warnings=True)
    unbounded = console.options.update_width(10_000)
    if Measurement.get(console, unbounded, table).minimum > console.width:
        table = _summary_table(rows, with_warnings=False)
    if rows:
        console.print(table)
    warned: dict[str, tuple[str, list[str]]] = {}
    for item in rows:
        for warning in item.warnings:
            warned.setdefault(warning.code, (warning.text, []))[1].append(_row_name(item))
    for code, (text, names) in warned.items():
        where = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        console.print(f"[yellow]{escape(code)}[/] {escape(text)} [dim]({escape(where)})[/]")
    for _, message in result.failed:
        error_line(message)
    skipped = ""
    if result.skipped:
        skipped = f", {len(result.skipped)} skipped (already planned; --overwrite replans them)"
    console.print(f"{len(result.planned)} planned, {len(result.failed)} failed{skipped}")


def _write_index(out: Path, result: BatchResult) -> Path:
    """index.html over every complete plan in `out` (this run's and earlier runs'), and this
    run's failures; it is derived from the plans, so it is always regenerated."""
    index = out / INDEX
    entries = index_entries(out, result.planned)
    failures = [{"photo": shown(p.name), "error": m} for p, m in result.failed]
    thumbnails = {item.stem: index_thumbnail(out, item.stem) for item, _ in entries}
    page = render_index(entries, failures, out, thumbnails=thumbnails)
    write_text(index, page, overwrite=True)
    return index


def open_model(path: Path, precision: str, threads: int) -> PlanningModel:
    """The planning model to run for `--precision`, which says why it was chosen."""
    choice = choose_precision(path, precision)
    return PlanningModel(choice.path, threads=threads, choice=choice)


def _marker_dict(value: str) -> str:
    names = dictionary_names()
    if value not in names:
        close = difflib.get_close_matches(value.upper(), names, n=1)
        hint = f"; did you mean {close[0]}?" if close else f" (e.g. {', '.join(names[:4])}...)"
        raise typer.BadParameter(f"{value!r} is not an OpenCV ArUco dictionary{hint}")
    return value


def plan_command(
    photos: list[Path] | None = typer.Argument(None, help="Photos and/or folders of photos."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Planning model (.onnx)."),
    mask: list[Path] | None = typer.Option(
        None,
        "--mask",
        help="Plan from masks drawn by a person (no model): a mask PNG, COCO or LabelMe JSON per "
        "photo, or one folder of them named after the photos, or one COCO file for all.",
    ),
    mask_values: str | None = typer.Option(
        None,
        "--mask-values",
        help="What a mask PNG's values mean, e.g. 0:background,255:vitiligo (default: class ids).",
    ),
    meta: list[str] | None = typer.Option(
        None,
        "--meta",
        help="KEY=VALUE for the report (patient, visit, body_site, clinician, notes); repeatable.",
    ),
    meta_csv: Path | None = typer.Option(
        None, "--meta-csv", help="CSV with a `photo` column and the --meta fields, per photo."
    ),
    out: Path = typer.Option(Path("plans"), "--out", "-o", help="Output folder."),
    recursive: bool = typer.Option(
        False,
        "--recursive",
        "-r",
        help="Also plan the photos in subfolders; outputs keep their path relative to the folder.",
    ),
    mm_per_pixel: float | None = mm_per_pixel_option(),
    marker_mm: float = marker_mm_option(),
    marker_dict: str = typer.Option(
        "DICT_4X4_50", "--marker-dict", callback=_marker_dict, help="OpenCV ArUco dictionary."
    ),
    marker_id: int | None = typer.Option(
        None, "--marker-id", min=0, max=MAX_MARKER_ID, help="Use only this marker id."
    ),
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
        max=MAX_PATCH_MM2,
        callback=finite,
        help="Ignore smaller patches for treatment (default: the procedure's).",
    ),
    min_patch_px: int = typer.Option(
        0, "--min-patch-px", min=0, max=MAX_PATCH_PX, help="Ignore patches under this many pixels."
    ),
    margin_mm: float | None = typer.Option(
        None,
        "--margin-mm",
        min=0.0,
        max=MAX_MARGIN_MM,
        callback=finite,
        help="Blending margin grown around treatable patches (default: the procedure's).",
    ),
    simplify_px: float = typer.Option(
        1.0,
        "--simplify-px",
        min=0.0,
        max=MAX_SIMPLIFY_PX,
        callback=finite,
        help="Outline simplification tolerance in px.",
    ),
    threads: int = threads_option(),
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
    if not photos:
        raise DermasegError("give photos or folders of photos to plan (see dermaseg plan --help)")
    for photo in photos:
        if str(photo).lower() in FLAG_WORDS and not photo.exists():
            raise DermasegError(
                f"{str(photo)!r} is not a photo: flags such as --no-marker take no value"
            )
    if mask and model is not None:
        raise DermasegError("give --model or --mask, not both (a mask replaces the model)")
    if not mask and model is None:
        raise DermasegError("give --model MODEL.onnx, or --mask MASK.png to plan from a mask")
    if mask and recursive:
        raise DermasegError("--mask pairs masks with photos one by one; it cannot be --recursive")
    paths = collect_photos(photos, recursive=recursive, out_dir=out)
    if not paths:
        raise DermasegError("no photos found in " + ", ".join(shown(p) for p in photos))
    if mask:
        mask = pair_masks(mask, paths)
    if previous is not None and len(paths) != 1:
        raise DermasegError(f"--previous compares one photo, but {len(paths)} were given")
    procedures = procedure_options(procedure, clinic_config, previous, min_patch_mm2, margin_mm)
    usable_folder(out, "--out")
    photo_meta = meta_source(parse_meta_options(meta or []), meta_csv)
    planning_model = None if mask else open_model(model, precision, threads)
    taxonomy = planning_model.taxonomy if planning_model is not None else DEFAULT_TAXONOMY
    calibration = CalibrationSettings(
        mm_per_pixel=mm_per_pixel,
        detect_marker=not no_marker,
        marker_mm=marker_mm,
        marker_dict=marker_dict,
        marker_id=marker_id,
        require_marker=require_marker,
    )
    planner = BatchPlanner(
        out,
        model=planning_model,
        calibration=calibration,
        settings=PlanSettings(min_patch_area_px=min_patch_px, simplify_px=simplify_px),
        procedures=procedures,
        overwrite=overwrite,
        full_resolution=full_resolution,
        mask_values=parse_mask_values(mask_values, taxonomy) if mask else None,
        options=plan_options(
            model=None if mask else model,
            calibration=calibration,
            procedures=procedures,
            taxonomy=taxonomy,
            min_patch_px=min_patch_px,
            simplify_px=simplify_px,
            full_resolution=full_resolution,
            previous=previous,
        ),
        meta=photo_meta,
    )
    with progress_bar("Planning", len(paths)) as advance:
        result = planner.run(paths, mask or None, progress=advance)
    if len(paths) > 1 or (out / INDEX).exists():
        index = _write_index(out, result)
        err_console.print(f"Report index: {escape(shown(index))}")
    elif result.planned:
        report = output_paths(out, result.planned[0].stem)["report"]
        err_console.print(f"Report: {escape(shown(report))}")
    if as_json:
        print_json(_summary(result, out))
    _print_summary(result, err_console if as_json else out_console)
    if result.failed:
        raise typer.Exit(1)


def rank_command(
    folder: Path = typer.Argument(..., help="Folder of unlabelled photos (or photo files)."),
    model: Path = typer.Option(..., "--model", "-m", help="Planning model (.onnx)."),
    out: Path = typer.Option(Path("ranked"), "--out", "-o", help="Output folder."),
    threads: int = threads_option(),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the ranking as JSON."),
) -> None:
    """Order unlabelled photos for labelling, most uncertain first (active learning).

    Writes OUT/ranking.csv (mean per-pixel entropy, so large photos are not favoured; see
    `dermaseg.infer.rank` for how it is estimated from the model's confidence) and
    OUT/pre_annotations.coco.json (the model's patches as COCO RLE, file names relative to
    FOLDER) to import into CVAT or Label Studio with the photos.
    """
    paths = [photo.path for photo in collect_photos([folder])]
    if not paths:
        raise DermasegError(f"no photos found in {folder}")
    files = {"csv": out / "ranking.csv", "coco": out / "pre_annotations.coco.json"}
    check_none_exist(files, overwrite)
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
