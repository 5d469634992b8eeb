"""`dermaseg data ...`: check a labelled dataset, generate synthetic photos."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from dermaseg.console import error_line, out_console, print_json, progress_bar
from dermaseg.datasets.check import CheckReport, check_dataset
from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.records import Problem
from dermaseg.datasets.synth_scene import MIN_SIZE
from dermaseg.errors import DermasegError, shown
from dermaseg.validation import MAX_THREADS

data_app = typer.Typer(
    help="Check labelled datasets and generate synthetic ones.", no_args_is_help=True
)

MAX_LISTED_PROBLEMS = 50


def _print_report(report: CheckReport, console: Console) -> None:
    """The report as tables: photos per split, labelled pixels per class, image sizes, and the
    problems, each distinct problem once with how many files have it."""
    summary = report.to_dict()
    console.print(
        f"[bold]{escape(shown(report.dataset))}[/] ({report.format}): {summary['photos']} photos"
    )
    splits = Table("split", "photos", title="Splits", title_justify="left")
    for name, count in summary["splits"].items():
        splits.add_row(name, str(count))
    console.print(splits)
    classes = Table(
        "class", "pixels", "share", "photos", title="Labelled pixels", title_justify="left"
    )
    for row in summary["classes"]:
        classes.add_row(
            row["class"], f"{row['pixels']:,}", f"{row['fraction']:.1%}", str(row["photos"])
        )
    console.print(classes)
    sizes = summary["sizes"]
    if sizes.get("count"):
        table = Table("", "min", "median", "max", title="Image sizes (px)", title_justify="left")
        for side in ("width", "height"):
            stats = sizes[side]
            table.add_row(side, str(stats["min"]), f"{stats['median']:g}", str(stats["max"]))
        console.print(table)
        common = ", ".join(f"{c['size']} ({c['photos']})" for c in sizes["most_common"])
        console.print(f"Most common sizes: {common}")
    groups = group_problems(report.problems)
    if groups:
        problems = Table(
            "", "kind", "files", "problem (first file)", title="Problems", title_justify="left"
        )
        problems.columns[3].overflow = "fold"
        for (severity, kind, message), paths in groups[:MAX_LISTED_PROBLEMS]:
            colour = "red" if severity == "error" else "yellow"
            first = f" ({shown(paths[0])})" if paths[0] else ""
            problems.add_row(
                f"[{colour}]{severity}[/]", kind, str(len(paths)), escape(message + first)
            )
        console.print(problems)
        if len(groups) > MAX_LISTED_PROBLEMS:
            console.print(
                f"... and {len(groups) - MAX_LISTED_PROBLEMS} more kinds of problem "
                "(--json lists every file)"
            )
    verdict = "[red]FAILED[/]" if report.errors else "[green]OK[/]"
    console.print(f"{verdict}: {len(report.errors)} errors, {len(report.warnings)} warnings")


def group_problems(problems: list[Problem]) -> list[tuple[tuple[str, str, str], list[str]]]:
    """Problems with the same severity, kind and message, with the files that have them;
    errors first, then the most frequent."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for problem in problems:
        groups.setdefault((problem.severity, problem.kind, problem.message), []).append(
            problem.path
        )
    return sorted(groups.items(), key=lambda item: (item[0][0] != "error", -len(item[1])))


@data_app.command("check")
def check(
    dataset: Path = typer.Argument(..., help="Dataset folder or dataset YAML."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON on stdout."),
    workers: int = typer.Option(
        0, min=0, max=MAX_THREADS, help="Reader threads (0: up to 4, one per core)."
    ),
) -> None:
    """Read every photo and label; report problems, class statistics and image sizes.

    Exit code 0 when there are no errors (warnings allowed), 1 when there are errors,
    2 when the dataset itself cannot be opened.
    """
    ds = Dataset.open(dataset)
    with progress_bar("Checking", len(ds.records)) as advance:
        report = check_dataset(ds, progress=advance, workers=workers or None)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_report(report, out_console)
    if report.errors:
        raise typer.Exit(1)


def _report_written(out: Path, manifest: dict, extra: dict, how: str, as_json: bool) -> None:
    """The result of `data synth` on stdout: a JSON summary, or one line and the next step."""
    photos = len(manifest["photos"])
    if as_json:
        summary = {"out": str(out), "photos": photos, **extra}
        print_json({**summary, "manifest": str(out / "manifest.json")})
        return
    out_console.print(
        f"Wrote {photos} photos{' ' + how if how else ''} to {out} (manifest.json, "
        f"dataset.yaml). Next: dermaseg data check {out}"
    )


def _synth_onto(out: Path, onto: Path, n: int, seed: int, as_json: bool) -> None:
    from dermaseg.datasets.synth_onto import generate_onto_dataset, source_photos

    if not onto.is_dir():
        raise DermasegError(f"--onto {shown(onto)}: not a folder of photos")
    sources = source_photos(onto)
    if not sources:
        raise DermasegError(f"--onto {shown(onto)}: no photos in it")
    with progress_bar("Painting", n) as advance:
        manifest, failures = generate_onto_dataset(out, sources, n, seed, progress=advance)
    for line in failures:
        error_line(line)
    if not manifest["photos"]:
        raise DermasegError(f"--onto {shown(onto)}: no photo could be painted")
    used = len(sources) - len(failures)
    _report_written(
        out,
        manifest,
        {"sources": used, "skipped_sources": len(failures), "seed": seed},
        f"painted onto {used} of yours",
        as_json,
    )
    if failures:
        raise typer.Exit(1)


MAX_SYNTH_SIZE = 8192
MAX_SYNTH_PHOTOS = 1_000_000


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, _, height = text.lower().partition("x")
        size = (int(width), int(height or width))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected S or WxH, e.g. 512 or 1024x768") from None
    if min(size) < MIN_SIZE or max(size) > MAX_SYNTH_SIZE:
        raise typer.BadParameter(f"{text!r}: each side must be {MIN_SIZE}..{MAX_SYNTH_SIZE} px")
    return size


def _size_option(text: str) -> str:
    """`--size` checked while the options are parsed, so that the error names the option."""
    _parse_size(text)
    return text


@data_app.command("synth")
def synth(
    out: Path = typer.Option(
        ..., "--out", help="Folder to write the dataset into (must not already hold one)."
    ),
    n: int = typer.Option(100, "--n", min=1, max=MAX_SYNTH_PHOTOS, help="Number of photos."),
    size: str = typer.Option(
        "512",
        "--size",
        callback=_size_option,
        help=f"Photo size: S (square) or WxH, each side {MIN_SIZE}..{MAX_SYNTH_SIZE} px.",
    ),
    seed: int = typer.Option(
        0, "--seed", min=0, help="Random seed; the same seed gives the same files."
    ),
    marker_fraction: float = typer.Option(
        0.5, min=0.0, max=1.0, help="Share of photos that carry an ArUco marker."
    ),
    onto: Path = typer.Option(
        None,
        "--onto",
        help="Paint depigmented patches and scars onto the photos in this folder (real skin "
        "without the classes; taken in turn, --n in all) instead of drawing whole photos; "
        "--size and --marker-fraction do not apply.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON on stdout."),
) -> None:
    """Generate synthetic skin and scalp photos with exact masks, areas and tones, or paint
    synthetic patches onto real photos (--onto)."""
    from dermaseg.datasets.synth import generate_dataset

    width, height = _parse_size(size)
    taken = [out / name for name in ("manifest.json", "dataset.yaml") if (out / name).exists()]
    if taken:
        raise DermasegError(
            f"{shown(taken[0])}: --out already holds a dataset; give another --out or remove it"
        )
    if onto is not None:
        _synth_onto(out, onto, n, seed, as_json)
        return
    with progress_bar("Generating", n) as advance:
        manifest = generate_dataset(
            out,
            n=n,
            size=(width, height),
            seed=seed,
            marker_fraction=marker_fraction,
            progress=advance,
        )
    if not manifest.get("photos"):
        raise DermasegError(f"{shown(out)}: no photos were generated")
    _report_written(out, manifest, {"size": [width, height], "seed": seed}, "", as_json)
