"""Plan a batch of photos: each photo on its own, failures collected, the rest still done."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY, Taxonomy
from dermaseg.errors import DermasegError, InputError
from dermaseg.infer import calibration as calib
from dermaseg.infer.contract import KEY_PRECISION
from dermaseg.infer.inputs import Photo, read_photo, read_plan_mask
from dermaseg.infer.outputs import check_free, output_paths, write_outputs
from dermaseg.infer.planner import PlanSettings, build_plan
from dermaseg.infer.schema import Calibration, Plan, SourceInfo
from dermaseg.infer.session import PlanningModel


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


@dataclass
class BatchResult:
    planned: list[PlannedPhoto] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def calibrate(photo: Photo, settings: CalibrationSettings) -> Calibration:
    """Manual scale, else the marker; a missing marker is a warning unless it is required."""
    if settings.mm_per_pixel is not None:
        return calib.manual_calibration(settings.mm_per_pixel)
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
        precision=model.metadata.get(KEY_PRECISION),
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
    ) -> None:
        self.out_dir = out_dir
        self.model = model
        self.taxonomy = model.taxonomy if model is not None else (taxonomy or DEFAULT_TAXONOMY)
        self.source = model_source(model) if model is not None else None
        self.calibration = calibration or CalibrationSettings()
        self.settings = settings or PlanSettings()
        self.overwrite = overwrite

    def plan_photo(self, path: Path, stem: str, mask_path: Path | None = None) -> PlannedPhoto:
        """Read, calibrate, segment (or read the mask), plan and write one photo's outputs."""
        paths = output_paths(self.out_dir, stem)
        check_free(paths, self.overwrite)
        photo = read_photo(path)
        calibration = calibrate(photo, self.calibration)
        mask, confidence, source = self._segment(photo, calibration, mask_path)
        plan = build_plan(
            photo.rgb,
            mask,
            confidence,
            photo=photo.info,
            source=source,
            calibration=calibration,
            taxonomy=self.taxonomy,
            settings=self.settings,
        )
        write_outputs(paths, plan, photo.rgb, mask, self.taxonomy, self.overwrite)
        return PlannedPhoto(path, plan, paths)

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
                result.planned.append(self.plan_photo(path, stem, mask_path))
            except DermasegError as exc:
                result.failed.append((path, str(exc)))
            except (ValueError, RuntimeError, MemoryError) as exc:
                result.failed.append((path, f"{path}: unexpected {type(exc).__name__}: {exc}"))
            if progress is not None:
                progress(1)
        return result
