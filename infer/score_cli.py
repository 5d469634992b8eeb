"""`dermaseg score salt|fvasi`: clinical scores from photos and a model or drawn masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, print_json
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import DermasegError, InputError
from dermaseg.infer import calibration as calib
from dermaseg.infer.batch import CalibrationSettings, calibrate, model_source
from dermaseg.infer.inputs import read_photo
from dermaseg.infer.mask_inputs import read_photo_mask
from dermaseg.infer.scores import SALT_WEIGHTS, fingertip_cm2, fvasi, salt, view_loss
from dermaseg.infer.session import PlanningModel
from dermaseg.validation import finite, marker_mm_option, mm_per_pixel_option, threads_option

score_app = typer.Typer(
    help="Clinical scores: SALT (alopecia, four scalp views) and F-VASI (facial vitiligo).",
    no_args_is_help=True,
)


def _class_ids(names: str, taxonomy: Taxonomy) -> list[int]:
    ids = []
    for name in (n.strip() for n in names.split(",") if n.strip()):
        if name not in taxonomy.names or taxonomy.class_id(name) == 0:
            raise DermasegError(f"unknown class {name!r}; the classes are {taxonomy.names[1:]}")
        ids.append(taxonomy.class_id(name))
    return ids


def _measure(
    photo_path: Path,
    mask_path: Path | None,
    model: PlanningModel | None,
    taxonomy: Taxonomy,
    settings: CalibrationSettings,
) -> tuple[np.ndarray, dict, float | None, np.ndarray | None]:
    """Class mask, provenance, mm per pixel and the marker's pixels of one photo."""
    photo = read_photo(photo_path)
    calibration = calibrate(photo, settings)
    if mask_path is not None:
        mask, source = read_photo_mask(mask_path, photo, taxonomy)
    elif model is not None:
        try:
            mask = model.run(photo.rgb, calibration.mm_per_pixel or 0.0).mask
        except Exception as exc:  # onnxruntime raises its own exception types
            raise InputError(photo_path, f"the model failed on this photo ({exc})") from None
        source = model_source(model)
    else:
        raise DermasegError("give --model MODEL.onnx, or masks drawn by a person")
    marker = calib.marker_polygon_mask(calibration, mask.shape)
    provenance = {
        "photo": str(photo_path),
        "photo_sha256": photo.info.sha256,
        "mask_from": f"{source.kind} {source.name}",
        "mask_sha256": source.sha256,
        "calibration": calibration.method,
    }
    return mask, provenance, calibration.mm_per_pixel, marker


def _setup(model: Path | None, threads: int) -> tuple[PlanningModel | None, Taxonomy]:
    planning = None if model is None else PlanningModel(model, threads=threads)
    return planning, planning.taxonomy if planning is not None else DEFAULT_TAXONOMY


@score_app.command("salt")
def salt_command(
    top: Path = typer.Option(..., "--top", help="Photo of the scalp from above."),
    back: Path = typer.Option(..., "--back", help="Photo of the back of the scalp."),
    left: Path = typer.Option(..., "--left", help="Photo of the left side."),
    right: Path = typer.Option(..., "--right", help="Photo of the right side."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Planning model (.onnx)."),
    mask_top: Path | None = typer.Option(None, "--mask-top", help="Mask drawn for --top."),
    mask_back: Path | None = typer.Option(None, "--mask-back", help="Mask drawn for --back."),
    mask_left: Path | None = typer.Option(None, "--mask-left", help="Mask drawn for --left."),
    mask_right: Path | None = typer.Option(None, "--mask-right", help="Mask drawn for --right."),
    loss_classes: str = typer.Option(
        "thinning,scar", "--loss-classes", help="Classes that count as hair loss."
    ),
    no_marker: bool = typer.Option(False, "--no-marker", help="Do not look for a marker."),
    threads: int = threads_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the score as JSON."),
) -> None:
    """SALT from four scalp views: % hair loss per view (loss classes / scalp shown; the
    calibration marker is not scalp), weighted 40/24/18/18, and its band S0-S5."""
    masks = {"top": mask_top, "back": mask_back, "left": mask_left, "right": mask_right}
    given = [name for name, path in masks.items() if path is not None]
    if given and len(given) != 4:
        raise DermasegError("give a mask for every view (--mask-top/back/left/right) or none")
    if not given and model is None:
        raise DermasegError("give --model MODEL.onnx, or --mask-top/back/left/right")
    planning, taxonomy = _setup(None if given else model, threads)
    ids = _class_ids(loss_classes, taxonomy)
    settings = CalibrationSettings(detect_marker=not no_marker)
    photos = {"top": top, "back": back, "left": left, "right": right}
    views = {}
    for name in SALT_WEIGHTS:
        mask, provenance, _, marker = _measure(
            photos[name], masks[name], planning, taxonomy, settings
        )
        loss, scalp, _ = view_loss(mask, ids, marker)
        views[name] = {**provenance, "loss_px": loss, "scalp_px": scalp}
    report = salt(views)
    report["loss_classes"] = [taxonomy.names[i] for i in ids]
    report["scalp"] = "every pixel of each photo except the calibration marker"
    if as_json:
        print_json(report)
        return
    table = Table("view", "photo", "loss %", "weight", "contribution", "computed")
    for name, row in report["views"].items():
        table.add_row(
            name,
            escape(Path(row["photo"]).name),
            f"{row['loss_percent']:.1f}",
            f"{row['weight']:.2f}",
            f"{row['contribution']:.1f}",
            escape(row["computed"]),
        )
    err_console.print(table)
    err_console.print(f"{report['formula']}")
    typer.echo(f"SALT {report['salt']:.1f} ({report['band']})")


@score_app.command("fvasi")
def fvasi_command(
    photos: list[Path] = typer.Argument(..., help="Face photos (parts of the face, no overlap)."),
    model: Path | None = typer.Option(None, "--model", "-m", help="Planning model (.onnx)."),
    mask: list[Path] | None = typer.Option(
        None, "--mask", help="Mask drawn by a person, one per photo (no model)."
    ),
    mm_per_pixel: float | None = mm_per_pixel_option(),
    marker_mm: float = marker_mm_option(),
    fingertip: float | None = typer.Option(
        None,
        "--fingertip-cm2",
        min=0.01,
        max=100.0,
        callback=finite,
        help="The patient's fingertip unit, cm² (measured).",
    ),
    hand: float | None = typer.Option(
        None,
        "--hand-cm2",
        min=1.0,
        max=2000.0,
        callback=finite,
        help="The patient's hand (palm + fingers), cm²; FTU = /32.1.",
    ),
    depigmentation: float = typer.Option(
        100.0, "--depigmentation", help="Degree of depigmentation, %: 0, 10, 25, 50, 75, 90, 100."
    ),
    lesion_class: str = typer.Option("vitiligo", "--class", help="The lesion class."),
    threads: int = threads_option(),
    as_json: bool = typer.Option(False, "--json", help="Print the score as JSON."),
) -> None:
    """F-VASI of face photos: lesion area in fingertip units (from the calibration) x the degree
    of depigmentation (see the README for the unit and the assumptions)."""
    if mask and len(mask) != len(photos):
        raise DermasegError(f"--mask given {len(mask)} times for {len(photos)} photos")
    if not mask and model is None:
        raise DermasegError("give --model MODEL.onnx, or --mask MASK.png per photo")
    planning, taxonomy = _setup(None if mask else model, threads)
    ids = _class_ids(lesion_class, taxonomy)
    settings = CalibrationSettings(mm_per_pixel=mm_per_pixel or None, marker_mm=marker_mm)
    rows = []
    for index, photo in enumerate(photos):
        found, provenance, scale, marker = _measure(
            photo, mask[index] if mask else None, planning, taxonomy, settings
        )
        lesion, _, _ = view_loss(found, ids, marker)
        rows.append({**provenance, "lesion_px": lesion, "mm_per_pixel": scale})
    ftu, ftu_source = fingertip_cm2(fingertip, hand)
    try:
        report = fvasi(rows, ftu, ftu_source, depigmentation)
    except ValueError as exc:
        raise DermasegError(str(exc)) from None
    if as_json:
        print_json(report)
        return
    table = Table("photo", "lesion cm²", "FTU", "computed")
    for row in report["photos"]:
        table.add_row(
            escape(Path(row["photo"]).name),
            f"{row['lesion_cm2']:.2f}",
            f"{row['ftu']:.2f}",
            escape(row["computed"]),
        )
    err_console.print(table)
    err_console.print(escape(report["formula"]))
    err_console.print(f"FTU: {escape(report['ftu_source'])}")
    for line in report["assumptions"]:
        err_console.print(f"[yellow]assumption[/] {escape(line)}")
    typer.echo(
        f"F-VASI {report['fvasi_ftu']:.2f} FTU ({report['fvasi_hand_units']:.3f} hand units)"
    )
