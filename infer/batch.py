"""Plan a batch of photos: each photo on its own, failures collected, the rest still done."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import DermasegError, InputError
from dermaseg.infer import calibration as calib
from dermaseg.infer.inputs import Photo, read_photo, read_plan_mask
from dermaseg.infer.outputs import check_free, output_paths, write_outputs
from dermaseg.infer.planner import PlanSettings, build_plan
from dermaseg.infer.procedure_plan import ProcedureOptions
from dermaseg.infer.report_html import plan_warnings
from dermaseg.infer.rescale import analysed_photo, to_photo_pixels
from dermaseg.infer.schema import Calibration, Plan, SourceInfo
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
    warnings: tuple[str, ...]

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
            warnings=tuple(plan_warnings(plan)),
        )


@dataclass
class BatchResult:
    planned: list[PlanSummary] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


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


def model_source(model: PlanningModel) -> SourceInfo:
    return SourceInfo(
        kind="model",
        name=model.path.name,
        sha256=hashlib.sha256(model.path.read_bytes()).hexdigest(),
        contract_version=model.metadata.get("dermaseg.contract_version"),
        precision=model.precision,
        precision_reason=model.precision_reason,
        working_size=model.working_size or None,
    )


def unique_stems(paths: list[Path]) -> list[str]:
    """Output stems named after the photos; a repeated stem gets -2, -3..."""
    seen: dict[str, int] = {}
    stems = []
    for path in paths:
        count = seen.get(path.stem, 0) + 1
        seen[path.stem] = count
        stems.append(path.stem if count == 1 else f"{path.stem}-{count}")
    return stems


class Planner:
    """Plans photos with a model, or from masks drawn by a person (`masks`), into `out_dir`."""

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
    ) -> None:
        self.out_dir = out_dir
        self.procedures = procedures
        self.full_resolution = full_resolution
        self.model = model
        self.taxonomy = model.taxonomy if model is not None else (taxonomy or DEFAULT_TAXONOMY)
        self.source = model_source(model) if model is not None else None
        self.calibration = calibration or CalibrationSettings()
        self.settings = settings or PlanSettings()
        self.overwrite = overwrite

    def plan_photo(self, path: Path, stem: str, mask_path: Path | None = None) -> PlannedPhoto:
        """Read, calibrate, segment (or read the mask), plan and write one photo's outputs."""
        clock = _Clock()
        paths = output_paths(self.out_dir, stem)
        check_free(paths, self.overwrite)
        photo = read_photo(path, min_long_side=0 if mask_path else self._analysis_long_side())
        clock.lap("decode")
        calibration = calibrate(photo, self.calibration)
        clock.lap("calibrate")
        mask, confidence, source = self._segment(photo, calibration, mask_path)
        clock.lap("inference")
        chosen = None if self.procedures is None else self.procedures.choose(mask, self.taxonomy)
        analysed = build_plan(
            photo.rgb,
            mask,
            confidence,
            photo=analysed_photo(photo.info, photo.rgb.shape[1], photo.rgb.shape[0]),
            source=source,
            calibration=calibration,
            taxonomy=self.taxonomy,
            settings=self.settings if chosen is None else chosen.plan_settings(self.settings),
            lap=clock.lap,
        )
        plan = to_photo_pixels(analysed, photo.info)
        if chosen is not None:
            plan = chosen.attach(plan, analysed, photo.rgb, mask, self.taxonomy)
        clock.lap("procedure")  # and the plan mapped back to photo pixels
        write_outputs(paths, plan, analysed, photo.rgb, mask, self.taxonomy, self.overwrite)
        clock.lap("outputs")
        return PlannedPhoto(path, plan, paths, clock.laps)

    def _analysis_long_side(self) -> int:
        """Large JPEGs are decoded at a fraction of their size that keeps at least this many
        px on the longer side: twice the model's working size, at least ANALYSIS_MIN_PX."""
        if self.full_resolution or self.model is None or not self.model.working_size:
            return 0
        return max(ANALYSIS_MIN_PX, 2 * self.model.working_size)

    def _segment(
        self, photo: Photo, calibration: Calibration, mask_path: Path | None
    ) -> tuple[np.ndarray, np.ndarray | None, SourceInfo]:
        if mask_path is not None:
            mask, source = read_plan_mask(mask_path, photo, self.taxonomy)
            return mask, None, source
        if self.model is None or self.source is None:
            raise DermasegError("a model (--model) or a mask (--mask) is needed to plan")
        try:
            result = self.model.run(photo.rgb, calibration.mm_per_pixel or 0.0)
        except Exception as exc:  # onnxruntime raises its own exception types
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                photo.path, f"the model failed on this photo ({first_line[:200]})"
            ) from None
        return result.mask, result.confidence, self.source

    def run(
        self,
        photos: list[Path],
        masks: list[Path] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> BatchResult:
        """Plan every photo; a failing photo is recorded and the batch goes on."""
        result = BatchResult()
        pairs = zip(photos, masks or [None] * len(photos), unique_stems(photos), strict=True)
        for path, mask_path, stem in pairs:
            try:
                planned = self.plan_photo(path, stem, mask_path)
                result.planned.append(PlanSummary.of(planned, stem))
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
