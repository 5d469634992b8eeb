"""Plan a batch of photos: each photo on its own, failures collected, the rest still done.

`BatchPlanner.make_plan` is the clinic path for one photo, in order: `inputs.read_photo` (decoded
at 1/r for a large JPEG), `calibrate`, segment (the model or a person's mask) into an
`analysis.Analysis` (analysed pixels), `planner.plan_from_mask` (the plan, in the photo's own
pixels: the one change of frame), the procedure (`procedure_plan`) and the review
(`review_flags`). `plan_photo` then writes it (`outputs.write_outputs`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import DermasegError, InputError, OutputExistsError
from dermaseg.fileio import user_file_sha256
from dermaseg.infer import calibration as calib
from dermaseg.infer import warning_codes as codes
from dermaseg.infer.analysis import Analysis, MadePlan
from dermaseg.infer.compare import read_plan
from dermaseg.infer.inputs import Photo, PhotoInput, as_inputs, read_photo
from dermaseg.infer.mask_inputs import MaskValues, read_photo_mask
from dermaseg.infer.outputs import SUFFIXES, check_free, output_paths, write_outputs
from dermaseg.infer.planner import PlanSettings, plan_from_mask
from dermaseg.infer.postprocess import PostProcess, apply_postprocess, read_postprocess
from dermaseg.infer.procedure_plan import ChosenProcedure, ProcedureOptions
from dermaseg.infer.report_html import plan_warnings
from dermaseg.infer.review_flags import review_plan
from dermaseg.infer.schema import (
    Calibration,
    Plan,
    PlanOptions,
    SourceInfo,
)
from dermaseg.infer.session import PlanningModel

ANALYSIS_MIN_PX = 1000  # a 4032x3024 photo is analysed at 1008x756


@dataclass(frozen=True)
class CalibrationSettings:
    """How mm per pixel is found: given by hand, or from an ArUco marker in the photo."""

    mm_per_pixel: float | None = None
    detect_marker: bool = True
    marker_mm: float = 20.0
    marker_dict: str = "DICT_4X4_50"
    marker_id: int | None = None
    require_marker: bool = False


@dataclass
class PlannedPhoto:
    path: Path
    plan: Plan
    outputs: dict[str, Path]
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


class _Clock:
    """Seconds spent in each named stage."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = now - self._last
        self._last = now


class Coded(NamedTuple):
    """A warning or review reason as a batch keeps it: code and text, no more (a tuple is a
    fraction of the size of the plan's pydantic object, and a batch keeps one per photo)."""

    code: str
    text: str


@dataclass(frozen=True, slots=True)
class PlanSummary:
    """What a batch keeps per planned photo (for its table, JSON summary and index page), so
    memory stays flat over thousands of photos; the full plan is in the photo's plan JSON."""

    path: Path
    stem: str
    calibration: str
    mm_per_pixel: float | None
    patches: int
    treatable_patches: int
    treatable_area_px: int
    treatable_area_mm2: float | None
    procedure: str | None
    classes: tuple[tuple[str, int, float | None, int], ...]  # name, px, mm², patches
    warnings: tuple[Coded, ...]
    needs_review: bool = False
    review: tuple[Coded, ...] = ()  # the reasons that set needs_review
    sessions: str | None = None  # "4-8"
    corrected: bool = False  # planned from a person's correction (review desk)

    @classmethod
    def of(cls, planned: PlannedPhoto, stem: str) -> PlanSummary:
        return cls.from_plan(planned.path, stem, planned.plan)

    @classmethod
    def from_plan(cls, path: Path, stem: str, plan: Plan) -> PlanSummary:
        return cls(
            path=path,
            stem=stem,
            calibration=plan.calibration.method,
            mm_per_pixel=plan.calibration.mm_per_pixel,
            patches=len(plan.patches),
            treatable_patches=plan.treatable.patch_count,
            treatable_area_px=plan.treatable.area_px,
            treatable_area_mm2=plan.treatable.area_mm2,
            procedure=None if plan.procedure is None else plan.procedure.name,
            classes=tuple(
                (c.name, c.area_px, c.area_mm2, c.patch_count)
                for c in plan.classes
                if c.class_id != 0
            ),
            warnings=tuple(Coded(w.code, w.text) for w in plan_warnings(plan)),
            needs_review=plan.review is not None and plan.review.needs_review,
            review=tuple(
                Coded(r.code, r.text)
                for r in (plan.review.reasons if plan.review else [])
                if r.sets_review
            ),
            sessions=(
                None
                if plan.procedure is None
                else f"{plan.procedure.sessions.low}-{plan.procedure.sessions.high}"
            ),
            corrected=plan.correction is not None,
        )


@dataclass
class BatchResult:
    planned: list[PlanSummary] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # plan already there


def index_entries(out_dir: Path, planned: list[PlanSummary]) -> list[tuple[PlanSummary, Path]]:
    """(summary, report path) for every complete plan in `out_dir` and its subfolders: this
    run's `planned` and the plan JSONs earlier runs left there, sorted by output name."""
    by_stem = {item.stem: item for item in planned}
    suffix = SUFFIXES["plan"]
    for path in out_dir.rglob(f"*{suffix}"):
        stem = path.relative_to(out_dir).as_posix()[: -len(suffix)]
        if stem in by_stem or path.name.startswith("."):
            continue
        try:
            plan = read_plan(path)
        except DermasegError:
            continue  # not a plan this dermaseg wrote; the index lists plans only
        by_stem[stem] = PlanSummary.from_plan(Path(plan.photo.name), stem, plan)
    return [(by_stem[s], output_paths(out_dir, s)["report"]) for s in sorted(by_stem)]


def calibrate(photo: Photo, settings: CalibrationSettings) -> Calibration:
    """Manual scale, else the marker; a missing marker is a warning unless it is required.

    The result is in the pixels of `photo.rgb` (the photo as analysed).
    """
    if settings.mm_per_pixel is not None:
        return calib.manual_calibration(settings.mm_per_pixel * photo.info.analysis_scale)
    if not settings.detect_marker:
        return calib.uncalibrated()
    found = calib.detect_marker(
        photo.rgb, settings.marker_mm, settings.marker_dict, settings.marker_id
    )
    if found.method == "none" and settings.require_marker:
        raise InputError(photo.path, f"no {settings.marker_dict} marker found (--require-marker)")
    return found


def plan_options(
    *,
    model: Path | None,
    calibration: CalibrationSettings,
    procedures: ProcedureOptions | None,
    taxonomy: Taxonomy,
    min_patch_px: int = 0,
    simplify_px: float = 1.0,
    full_resolution: bool = False,
    previous: Path | None = None,
) -> PlanOptions:
    """What the plan JSON records of the options, enough to plan the photo again the same way."""
    procedures = procedures or ProcedureOptions()
    clinic = procedures.clinic
    return PlanOptions(
        model=None if model is None else model.name,
        classes=[c.model_dump(mode="json") for c in taxonomy.classes],
        mm_per_pixel=calibration.mm_per_pixel,
        detect_marker=calibration.detect_marker,
        marker_mm=calibration.marker_mm,
        marker_dict=calibration.marker_dict,
        marker_id=calibration.marker_id,
        require_marker=calibration.require_marker,
        procedure=procedures.name,
        clinic_config=None if clinic is None else clinic.model_dump(mode="json"),
        clinic_config_name=None if procedures.clinic_path is None else procedures.clinic_path.name,
        min_patch_mm2=procedures.min_patch_mm2,
        margin_mm=procedures.margin_mm,
        min_patch_px=min_patch_px,
        simplify_px=simplify_px,
        full_resolution=full_resolution,
        previous=None if previous is None else previous.name,  # names only, as for the photo
    )


def model_source(model: PlanningModel) -> SourceInfo:
    return SourceInfo(
        kind="model",
        name=model.path.name,
        sha256=user_file_sha256(model.path),
        contract_version=model.metadata.get("dermaseg.contract_version"),
        precision=model.precision,
        precision_reason=model.precision_reason,
        working_size=model.working_size or None,
    )


class ModelContractError(InputError):
    """The model's outputs break the planning contract: the model's fault, not the photo's,
    so the batch stops (every photo would fail the same way)."""


def check_model_outputs(
    model: PlanningModel, size: tuple[int, int], mask: np.ndarray, confidence: np.ndarray
) -> None:
    """Mask and confidence are uint8 arrays of the photo's size; mask values are class ids."""
    expected = f"uint8 {size[1]}x{size[0]}"
    for name, array in (("mask", mask), ("confidence", confidence)):
        if array.dtype != np.uint8 or array.shape != size:
            found = f"{array.dtype} {'x'.join(map(str, array.shape[::-1]))}"
            raise ModelContractError(
                model.path, f"breaks the planning contract: {name} is {found}, not {expected}"
            )
    top = int(mask.max(initial=0))
    if top >= model.taxonomy.num_classes:
        raise ModelContractError(
            model.path,
            f"breaks the planning contract: mask value {top} is not a class id "
            f"(0..{model.taxonomy.num_classes - 1})",
        )


class BatchPlanner:
    """Plans photos with a model, or from masks drawn by a person (`masks`), into `out_dir`:
    the options read once, then `run` over a batch (or `make_plan` for one photo, no files)."""

    def __init__(
        self,
        out_dir: Path,
        *,
        model: PlanningModel | None = None,
        taxonomy: Taxonomy | None = None,
        calibration: CalibrationSettings | None = None,
        settings: PlanSettings | None = None,
        overwrite: bool = False,
        full_resolution: bool = False,
        procedures: ProcedureOptions | None = None,
        mask_values: MaskValues | None = None,
        options: PlanOptions | None = None,
        meta: Callable[[Path], dict[str, str]] | None = None,
    ) -> None:
        self.out_dir = out_dir
        self.mask_values = mask_values
        self.options = options
        self.meta = meta or (lambda path: {})
        self.procedures = procedures
        self.full_resolution = full_resolution
        self.model = model
        self.taxonomy = model.taxonomy if model is not None else (taxonomy or DEFAULT_TAXONOMY)
        self.source = model_source(model) if model is not None else None
        self.calibration = calibration or CalibrationSettings()
        self.settings = settings or PlanSettings()
        self.overwrite = overwrite
        self.postprocess, self.postprocess_warning = (
            read_postprocess(model.metadata, self.taxonomy)
            if model is not None
            else (PostProcess(), None)
        )

    def plan_photo(self, path: Path, stem: str, mask_path: Path | None = None) -> PlannedPhoto:
        """Read, calibrate, segment (or read the mask), plan and write one photo's outputs."""
        clock = _Clock()
        paths = output_paths(self.out_dir, stem)
        check_free(paths, self.overwrite)
        made = self.make_plan(path, mask_path, lap=clock.lap)
        write_outputs(paths, made, self.taxonomy, self.overwrite, lap=clock.lap)
        return PlannedPhoto(path, made.plan, paths, clock.laps)

    def make_plan(
        self,
        path: Path,
        mask_path: Path | None = None,
        lap: Callable[[str], None] = lambda stage: None,
    ) -> MadePlan:
        """Read, calibrate, segment (or read the mask) and plan one photo; writes nothing."""
        photo = read_photo(path, min_long_side=0 if mask_path else self._analysis_long_side())
        lap("decode")
        calibration = calibrate(photo, self.calibration)
        lap("calibrate")
        analysis = self._segment(photo, calibration, mask_path)
        lap("inference")
        return self.plan_segmented(analysis, lap, meta=self.meta(path))

    def plan_segmented(
        self,
        analysis: Analysis,
        lap: Callable[[str], None] = lambda stage: None,
        *,
        meta: dict[str, str] | None = None,
    ) -> MadePlan:
        """Plan a segmented photo (`analysis`, in the analysed pixels): the plan in the photo's
        pixels with its procedure and review. `make_plan` and the review desk's re-plan from a
        corrected mask both call this."""
        settings, chosen = self._settings(analysis.mask, analysis.calibration, analysis.source)
        found = plan_from_mask(
            analysis.rgb,
            analysis.mask,
            analysis.confidence,
            photo=analysis.photo.info,
            source=analysis.source,
            calibration=analysis.calibration,
            taxonomy=self.taxonomy,
            settings=settings,
            lap=lap,
        )
        made = MadePlan(found.plan, analysis, found.regions)
        plan = made.plan if chosen is None else chosen.attach(made, self.taxonomy)
        review = review_plan(
            plan, analysis.rgb, analysis.mask, analysis.confidence, analysis.disagreement
        )
        plan = plan.model_copy(
            update={"review": review, "meta": dict(meta or {}), "options": self.options}
        )
        lap("procedure")  # and its review
        return MadePlan(plan, analysis, found.regions)

    def _analysis_long_side(self) -> int:
        """Large JPEGs are decoded at a fraction of their size that keeps at least this many
        px on the longer side: twice the model's working size, at least ANALYSIS_MIN_PX."""
        if self.full_resolution or self.model is None or not self.model.working_size:
            return 0
        return max(ANALYSIS_MIN_PX, 2 * self.model.working_size)

    def _settings(
        self, mask: np.ndarray, calibration: Calibration, source: SourceInfo
    ) -> tuple[PlanSettings, ChosenProcedure | None]:
        """The planner's settings: the chosen procedure's, or the model's treatable classes when
        no procedure treats them (with a warning saying so)."""
        settings = self.settings
        if self.postprocess_warning is not None and source.kind == "model":
            extra = [*settings.extra_warnings, self.postprocess_warning]
            settings = dataclasses.replace(settings, extra_warnings=extra)
        if self.procedures is None:
            return settings, None
        chosen = self.procedures.choose(
            mask, self.taxonomy, settings, calibration.mm_per_pixel, source.working_size
        )
        if chosen is not None:
            return chosen.plan_settings(settings), chosen
        names = ", ".join(c.name for c in self.taxonomy.classes[1:])
        extra = [*settings.extra_warnings, codes.warning("no-procedure", classes=names)]
        return dataclasses.replace(settings, extra_warnings=extra), None

    def _segment(self, photo: Photo, calibration: Calibration, mask_path: Path | None) -> Analysis:
        """The photo segmented by a person's mask or the model (with, for a model exported
        with TTA, its disagreement map). Only the model's mask and confidence are used:
        its `area_px` / `boundary` outputs describe the mask before `postprocess` (and never a
        person's mask), so areas and outlines are measured on the mask that is planned."""
        if mask_path is not None:
            mask, source = read_photo_mask(mask_path, photo, self.taxonomy, self.mask_values)
            return Analysis(photo, mask, None, calibration, source)
        if self.model is None or self.source is None:
            raise DermasegError("a model (--model) or a mask (--mask) is needed to plan")
        try:
            result = self.model.run(photo.rgb, calibration.mm_per_pixel or 0.0)
        except Exception as exc:  # onnxruntime raises its own exception types
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                photo.path, f"the model failed on this photo ({first_line[:200]})"
            ) from None
        check_model_outputs(self.model, photo.rgb.shape[:2], result.mask, result.confidence)
        mask = apply_postprocess(result.mask, self.postprocess)
        disagreement = getattr(result, "tta_disagreement", None)
        return Analysis(photo, mask, result.confidence, calibration, self.source, disagreement)

    def run(
        self,
        photos: list[PhotoInput] | list[Path],
        masks: list[Path] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Plan every photo; a failing photo is recorded and the batch goes on; a photo whose
        plan is already in the output folder is skipped (unless `overwrite`)."""
        result = BatchResult()
        inputs = as_inputs(photos)
        for item, mask_path in zip(inputs, masks or [None] * len(inputs), strict=True):
            path, stem = item.path, item.stem
            try:
                planned = self.plan_photo(path, stem, mask_path)
                result.planned.append(PlanSummary.of(planned, stem))
            except OutputExistsError as exc:
                result.skipped.append((path, str(exc)))
            except ModelContractError:
                raise  # the model, not this photo: no point going on
            except DermasegError as exc:
                result.failed.append((path, str(exc)))
            except Exception as exc:  # one photo's unforeseen failure must not end the batch
                first_line = (str(exc).strip().splitlines() or [""])[0][:200]
                result.failed.append(
                    (path, f"{path}: unexpected {type(exc).__name__}: {first_line}")
                )
            if progress is not None:
                progress(1)
        return result
