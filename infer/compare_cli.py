"""`dermaseg compare`: two visits of one patient, aligned, with a change map (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, print_json
from dermaseg.datasets.images import encode_png
from dermaseg.errors import DermasegError
from dermaseg.fileio import write_bytes, write_json, write_text
from dermaseg.infer.change_map import CATEGORIES
from dermaseg.infer.compare import (
    compare_plans,
    compare_visits,
    find_visit,
    plan_stem,
    plan_warnings,
)
from dermaseg.infer.compare_report import render_change_overlay, render_compare_page
from dermaseg.infer.outputs import check_none_exist


def compare_outputs(out: Path, before: Path, after: Path) -> dict[str, Path]:
    """Where a comparison's files go: FIRST-vs-SECOND.{compare.json,change.png,compare.html}."""
    stem = f"{plan_stem(before)}-vs-{plan_stem(after)}"
    return {
        "json": out / f"{stem}.compare.json",
        "overlay": out / f"{stem}.change.png",
        "report": out / f"{stem}.compare.html",
    }


def compare_command(
    before: Path = typer.Argument(..., help="Plan JSON of the earlier visit."),
    after: Path = typer.Argument(..., help="Plan JSON of the later visit."),
    photo_a: Path | None = typer.Option(
        None,
        "--photo-a",
        help="Photo of the earlier visit (default: the plan's photo name next to the plan).",
    ),
    photo_b: Path | None = typer.Option(None, "--photo-b", help="Photo of the later visit."),
    mask_a: Path | None = typer.Option(
        None,
        "--mask-a",
        help="Class mask of the earlier visit (default: NAME.mask.png next to the plan).",
    ),
    mask_b: Path | None = typer.Option(None, "--mask-b", help="Class mask of the later visit."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the change map PNG, HTML and JSON (default: the later plan's folder).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    as_json: bool = typer.Option(False, "--json", help="Print the comparison as JSON."),
) -> None:
    """Change between two visits: the later photo aligned onto the earlier (ArUco marker and skin
    features), a change map (new, grown, shrunk, cleared, unchanged) with areas in mm² and %,
    patches matched across visits, an overlay PNG and an HTML page. Without the photos, the
    plans' totals only (with a warning).

    Exit code 2 when the photos cannot be aligned (for example two different sites)."""
    warnings: list[str] = []
    first = find_visit(before, photo_a, mask_a, warnings)
    second = find_visit(after, photo_b, mask_b, warnings)
    report = compare_plans(first.plan, second.plan)
    report["warnings"] += plan_warnings(first.plan, second.plan) + warnings
    missing = [
        f"{what} of {visit.plan_path.name}"
        for visit in (first, second)
        for what, path in (("photo", visit.photo_path), ("mask", visit.mask_path))
        if path is None
    ]
    if missing and (photo_a or photo_b or mask_a or mask_b):
        raise DermasegError(
            "no change map without both photos and masks: missing the " + ", ".join(missing)
        )
    if missing:
        report["warnings"].append(
            "totals only, no alignment and no change map: missing the "
            + ", ".join(missing)
            + " (give --photo-a/--photo-b, --mask-a/--mask-b)"
        )
        report["change"] = None
        _print(report, as_json, None)
        return
    paths = compare_outputs(out or second.plan_path.parent, first.plan_path, second.plan_path)
    check_none_exist(paths, overwrite)
    visits, images = compare_visits(first, second)
    report["warnings"] += visits.pop("warnings")
    report.update(visits)
    overlay = encode_png(
        render_change_overlay(
            images["rgb_a"],
            images["rgb_b_on_a"],
            images["change"],
            images["labels_a"],
            images["labels_b_on_a"],
        ),
        compress_level=1,
    )
    report["outputs"] = {k: str(v) for k, v in paths.items()}
    write_bytes(paths["overlay"], overlay, overwrite=overwrite)
    write_text(paths["report"], render_compare_page(report, overlay), overwrite=overwrite)
    write_json(paths["json"], report, overwrite=overwrite)
    _print(report, as_json, paths)


def _print(report: dict, as_json: bool, paths: dict[str, Path] | None) -> None:
    if as_json:
        print_json(report)
    else:
        _print_totals(report)
        if report.get("change"):
            _print_change(report)
    for warning in report["warnings"]:
        err_console.print(f"[yellow]warning[/] {escape(warning)}")
    if paths is not None:
        err_console.print(f"Change map: {escape(str(paths['overlay']))}")
        err_console.print(f"Report: {escape(str(paths['report']))}")


def _print_totals(report: dict) -> None:
    unit = "mm²" if report["unit"] == "mm2" else "px"
    table = Table("class", f"before ({unit})", f"after ({unit})", "change", "patches")
    for row in report["classes"]:
        area, patches = row["area"], row["patches"]
        percent = area["change_percent"]
        table.add_row(
            row["class"],
            f"{area['before']:,.1f}",
            f"{area['after']:,.1f}",
            f"{area['change']:+,.1f}" + ("" if percent is None else f" ({percent:+.1f}%)"),
            f"{patches['before']} -> {patches['after']}",
        )
    err_console.print(f"{escape(report['before'])} -> {escape(report['after'])} (plan totals)")
    err_console.print(table)


def _print_change(report: dict) -> None:
    change = report["change"]
    unit = "mm²" if change["unit"] == "mm2" else "px"
    key = "mm2" if change["unit"] == "mm2" else "px"
    alignment = report["alignment"]
    err_console.print(
        f"aligned by {alignment['method']}: {alignment['inliers']}/{alignment['matches']} matches, "
        f"{alignment['reprojection_rms_px']} px RMS, {100 * alignment['overlap']:.0f} % overlap"
    )
    table = Table("class", f"before ({unit})", f"after ({unit})", *CATEGORIES)
    for row in change["classes"]:
        table.add_row(
            escape(row["class"]),
            f"{row[f'before_{key}']:,.1f}",
            f"{row[f'after_{key}']:,.1f}",
            *(f"{row[f'{name}_{key}']:,.1f}" for name in CATEGORIES),
        )
    err_console.print(table)
    patches = Table("patch", "class", "matched (2nd visit)", "before", "after", "status")
    for p in change["patches"]:
        patches.add_row(
            str(p["id"]),
            escape(p["class"]),
            ", ".join(str(i) for i in p["matched_ids_b"]) or "-",
            f"{p[f'before_{key}']:,.1f}",
            f"{p[f'after_{key}']:,.1f}",
            p["status"],
        )
    for p in change["new_patches"]:
        patches.add_row(
            "-", escape(p["class"]), str(p["id_b"]), "-", f"{p[f'after_{key}']:,.1f}", "new"
        )
    err_console.print(patches)
