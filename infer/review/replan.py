"""Plan a photo again from a person's corrected mask, with the options recorded in its plan.

The same steps as `dermaseg plan` (`BatchPlanner.plan_segmented`, `write_outputs`): the
corrected mask is written beside the model's (`NAME.corrected.png`; `NAME.mask.png` is kept), the
other outputs are replaced, and the plan records the correction. The index page is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import decode_image, encode_jpeg
from dermaseg.errors import InputError
from dermaseg.fileio import write_json, write_text
from dermaseg.infer import warning_codes as codes
from dermaseg.infer.analysis import Analysis
from dermaseg.infer.batch import BatchPlanner, PlanSummary
from dermaseg.infer.compare import read_plan
from dermaseg.infer.formats import palette_mask_png
from dermaseg.infer.inputs import Photo
from dermaseg.infer.outputs import (
    corrected_paths,
    index_thumbnail,
    write_outputs,
)
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.procedure_plan import ProcedureOptions
from dermaseg.infer.procedures import ClinicConfig
from dermaseg.infer.report_html import render_index, render_report
from dermaseg.infer.rescale import analysed_calibration, to_photo_mask
from dermaseg.infer.review.folder import PlanFolder
from dermaseg.infer.schema import Correction, Plan, PlanOptions, PlanWarning, SourceInfo

TOOL = "dermaseg review"


def procedure_options(
    folder: PlanFolder, options: PlanOptions
) -> tuple[ProcedureOptions, PlanWarning | None]:
    """The procedure options recorded in the plan, and a warning when the previous plan (for
    stability) is not in the plan folder and so cannot be used again."""
    previous, warning = None, None
    if options.previous:
        candidate = folder.root / Path(options.previous).name
        if candidate.is_file() and not candidate.is_symlink():
            previous = read_plan(candidate)
        else:
            warning = codes.warning("previous-not-in-folder", name=candidate.name)
    clinic = None if options.clinic_config is None else ClinicConfig(**options.clinic_config)
    return (
        ProcedureOptions(
            name=options.procedure,
            clinic=clinic,
            clinic_path=Path(options.clinic_config_name) if options.clinic_config_name else None,
            min_patch_mm2=options.min_patch_mm2,
            margin_mm=options.margin_mm,
            previous=previous,
        ),
        warning,
    )


def analysed_photo_of(folder: PlanFolder, stem: str, plan: Plan) -> Photo:
    """NAME.photo.jpg (the photo as analysed), with the plan's record of the original photo."""
    path = folder.paths(stem)["photo"]
    rgb = decode_image(folder.read(stem, "photo"), path).pixels
    scale = plan.photo.analysis_scale
    expected = (plan.photo.height // scale, plan.photo.width // scale)
    if rgb.shape[:2] != expected:
        raise InputError(
            path, f"is {rgb.shape[1]}x{rgb.shape[0]}, the plan expects {expected[1]}x{expected[0]}"
        )
    return Photo(path, rgb, plan.photo)


def replan_corrected(folder: PlanFolder, stem: str, mask: np.ndarray) -> Plan:
    """Save `mask` (class ids at the size of NAME.photo.jpg) as the person's correction and plan
    the photo again from it; returns the new plan."""
    plan = folder.plan(stem)
    taxonomy = folder.taxonomy(plan)
    photo = analysed_photo_of(folder, stem, plan)
    if mask.shape != photo.rgb.shape[:2] or mask.dtype != np.uint8:
        raise InputError(
            folder.paths(stem)["photo"],
            f"the corrected mask is {mask.shape[::-1]}, the photo {photo.rgb.shape[1::-1]}",
        )
    if mask.size and int(mask.max()) >= taxonomy.num_classes:
        raise InputError(folder.paths(stem)["plan"], f"mask value {int(mask.max())} is no class")
    options = plan.options or PlanOptions(classes=[c.model_dump() for c in taxonomy.classes])
    procedures, warning = procedure_options(folder, options)
    planner = BatchPlanner(
        folder.root,
        taxonomy=taxonomy,
        settings=PlanSettings(
            min_patch_area_px=options.min_patch_px,
            simplify_px=options.simplify_px,
            extra_warnings=[warning] if warning is not None else [],
        ),
        procedures=procedures,
        options=options,
        overwrite=True,
    )
    png = palette_mask_png(to_photo_mask(mask, plan.photo.analysis_scale), taxonomy)
    paths = corrected_paths(folder.root, stem)
    source = SourceInfo(
        kind="mask", name=paths["mask"].name, sha256=hashlib.sha256(png).hexdigest()
    )
    calibration = analysed_calibration(plan.calibration, plan.photo)
    made = planner.plan_segmented(Analysis(photo, mask, None, calibration, source), meta=plan.meta)
    original = plan.correction.original_source if plan.correction is not None else plan.source
    new = made.plan.model_copy(
        update={
            "correction": Correction(
                tool=TOOL,
                corrected_mask=paths["mask"].name,
                original_source=original,
                original_mask=folder.paths(stem)["mask"].name,
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
        }
    )
    photo_jpeg = folder.read(stem, "photo")
    made = dataclasses.replace(made, plan=new)
    write_outputs(paths, made, taxonomy, True, photo_jpeg=photo_jpeg)
    write_index(folder)
    return new


def update_meta(folder: PlanFolder, stem: str, meta: dict[str, str]) -> Plan:
    """Replace the plan's patient/visit fields and render its report again (no re-planning)."""
    plan = folder.plan(stem).model_copy(update={"meta": meta})
    raw = folder.raw_plan(stem)
    raw["meta"] = meta
    paths = folder.paths(stem)
    overlay = decode_image(folder.read(stem, "overlay"), paths["overlay"]).pixels
    report = render_report(
        plan, encode_jpeg(overlay, 90), folder.taxonomy(plan), photo=folder.read(stem, "photo")
    )
    write_text(paths["report"], report)
    write_json(paths["plan"], raw)  # keeps sections another version of dermaseg added
    write_index(folder)
    return plan


def write_index(folder: PlanFolder) -> Path:
    """index.html over every plan in the folder (rebuilt from the plan JSONs)."""
    entries, thumbnails = [], {}
    for stem in folder.stems():
        try:
            plan = folder.plan(stem)
        except InputError:
            continue
        paths = folder.paths(stem)
        entries.append((PlanSummary.from_plan(Path(plan.photo.name), stem, plan), paths["report"]))
        thumbnails[stem] = index_thumbnail(folder.root, stem)
    index = folder.root / "index.html"
    write_text(index, render_index(entries, [], folder.root, thumbnails=thumbnails))
    return index
