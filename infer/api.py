"""Plan a photo from Python, without writing any file.

    from dermaseg.infer import plan_photo
    plan = plan_photo("arm.jpg", model="model.onnx")            # the model segments the photo
    plan = plan_photo("arm.jpg", mask="arm.mask.png", mm_per_pixel=0.1)   # a mask drawn by a person
    plan.review.needs_review, [w.code for w in plan.warnings], plan.procedure.pigment_target

The same steps as `dermaseg plan` (`batch.BatchPlanner.make_plan`): read the photo, calibrate
(the given scale, else an ArUco marker), segment, choose the procedure, plan, review. The plan is
in the photo's own pixels, exactly as `dermaseg plan` writes it to NAME.plan.json. For files
too, `BatchPlanner.make_plan` gives the plan with what it was made from (`analysis.MadePlan`),
which `dermaseg.infer.outputs.write_outputs` writes.
"""

from __future__ import annotations

from pathlib import Path

from dermaseg.errors import DermasegError
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.procedure_plan import procedure_options
from dermaseg.infer.schema import Plan
from dermaseg.infer.session import PlanningModel


def plan_photo(
    photo: str | Path,
    *,
    model: str | Path | PlanningModel | None = None,
    mask: str | Path | None = None,
    mm_per_pixel: float | None = None,
    detect_marker: bool = True,
    marker_mm: float = 20.0,
    procedure: str | None = None,
    min_patch_mm2: float | None = None,
    margin_mm: float | None = None,
    clinic_config: str | Path | None = None,
    previous: str | Path | None = None,
) -> Plan:
    """The plan of one photo (see the module notes); `model` (a path or a loaded model, reused
    across calls) or `mask` is needed. Bad input raises `dermaseg.errors.DermasegError`."""
    if model is None and mask is None:
        raise DermasegError("plan_photo needs a model or a mask")
    if model is not None and not isinstance(model, PlanningModel):
        model = PlanningModel(model)
    planner = BatchPlanner(
        Path("."),
        model=None if mask is not None else model,
        calibration=CalibrationSettings(
            mm_per_pixel=mm_per_pixel, detect_marker=detect_marker, marker_mm=marker_mm
        ),
        settings=PlanSettings(),
        procedures=procedure_options(
            procedure,
            None if clinic_config is None else Path(clinic_config),
            None if previous is None else Path(previous),
            min_patch_mm2,
            margin_mm,
        ),
    )
    return planner.make_plan(Path(photo), None if mask is None else Path(mask)).plan
