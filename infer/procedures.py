"""Procedure profiles (configs/procedures/*.yaml) and clinic overrides: what a procedure treats,
its minimum patch size and blending margin, its pigment target and its session model."""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from dermaseg.errors import InputError
from dermaseg.validation import validation_message
from dermaseg.yamlio import parse_mapping, read_mapping

DEFAULT = "default"
CLINIC = "clinic setting"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SessionModel(_Strict):
    """How many sessions a course takes, and how they are spaced (clinic settings)."""

    min: int = Field(ge=1, le=50)
    max: int = Field(ge=1, le=50)
    area_per_session_cm2: float = Field(gt=0)
    interval_weeks: tuple[float, float]
    touch_up_months: tuple[float, float]

    @model_validator(mode="after")
    def _ordered(self) -> SessionModel:
        if self.min > self.max:
            raise ValueError(f"sessions.min ({self.min}) is above sessions.max ({self.max})")
        for name in ("interval_weeks", "touch_up_months"):
            low, high = getattr(self, name)
            if not 0 <= low <= high:
                raise ValueError(f"sessions.{name} must be [low, high] with 0 <= low <= high")
        return self


class Procedure(_Strict):
    """One micropigmentation procedure."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    title: str
    classes: tuple[str, ...] = Field(min_length=1)
    pigment_target: Literal["skin", "hair"]
    min_patch_area_mm2: float = Field(ge=0)
    margin_mm: float = Field(ge=0, le=100)
    sessions: SessionModel
    stability_change_percent: float = Field(gt=0)


class ClinicConfig(_Strict):
    """A clinic's overrides: `procedures: {NAME: {any profile number}}`."""

    procedures: dict[str, dict] = Field(default_factory=dict)


class Sessions(BaseModel):
    """An estimated course of sessions and the rule that produced it."""

    low: int
    high: int
    rule: str


def shipped_procedures() -> list[str]:
    folder = resources.files("dermaseg.configs") / "procedures"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_procedure(name: str) -> Procedure:
    """A shipped procedure profile by name; an unknown name lists the valid ones."""
    if name not in shipped_procedures():
        raise InputError(name, f"unknown procedure; choose from {', '.join(shipped_procedures())}")
    resource = resources.files("dermaseg.configs") / "procedures" / f"{name}.yaml"
    return _validate(parse_mapping(resource.read_text(encoding="utf-8"), name), name)


class _ClinicProcedures(_Strict):
    """Wraps overridden profiles so problems are reported as procedures.NAME.key."""

    procedures: dict[str, Procedure]


def _validate(data: dict, source: str | Path, clinic: bool = False) -> Procedure:
    """A valid Procedure; with `clinic`, problems name the key as procedures.NAME.key."""
    try:
        if not clinic:
            return Procedure.model_validate(data)
        name = data.get("name", "")
        return _ClinicProcedures.model_validate({"procedures": {name: data}}).procedures[name]
    except ValidationError as exc:
        model = _ClinicProcedures if clinic else Procedure
        raise InputError(source, validation_message(exc, model)) from None


def read_clinic_config(path: Path) -> ClinicConfig:
    """A clinic config file, each override checked against the profile it changes."""
    data = read_mapping(path)
    try:
        config = ClinicConfig.model_validate(data)
    except ValidationError as exc:
        raise InputError(path, validation_message(exc, ClinicConfig)) from None
    for name, overrides in config.procedures.items():
        if name not in shipped_procedures():
            raise InputError(
                path,
                f"procedures.{name}: unknown procedure; choose from "
                f"{', '.join(shipped_procedures())}",
            )
        if not isinstance(overrides, dict):
            raise InputError(path, f"procedures.{name}: expected a mapping of settings")
        apply_overrides(load_procedure(name), overrides, path, clinic=True)
    return config


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def apply_overrides(
    procedure: Procedure, overrides: dict, source: str | Path, clinic: bool = False
) -> Procedure:
    """The procedure with a clinic's numbers in place of the defaults (validated again); with
    `clinic`, problems are reported as procedures.NAME.key."""
    if "name" in overrides and overrides["name"] != procedure.name:
        where = f"procedures.{procedure.name}." if clinic else ""
        raise InputError(source, f"{where}name cannot be changed")
    return _validate(_merge(procedure.model_dump(mode="json"), overrides), source, clinic)


def overridden_keys(overrides: dict, prefix: str = "") -> set[str]:
    """Dotted keys a clinic config set, e.g. {'sessions.max', 'margin_mm'}."""
    keys: set[str] = set()
    for key, value in overrides.items():
        if isinstance(value, dict):
            keys |= overridden_keys(value, f"{prefix}{key}.")
        else:
            keys.add(f"{prefix}{key}")
    return keys


# the procedure each class gets by default, in order of precedence when areas tie
DEFAULT_PROCEDURES: tuple[tuple[str, str], ...] = (
    ("thinning", "smp-thinning"),
    ("vitiligo", "vitiligo-camouflage"),
    ("scar", "scar-camouflage"),
)


def choose_procedure(treatable_px: dict[str, int], found_px: dict[str, int] | None = None) -> str:
    """The default procedure for a photo: that of the class with the largest treatable area
    (patches at least its procedure's minimum size); with none, that of the class with the most
    pixels (the plan then says nothing is treatable); with no class found, vitiligo camouflage."""
    for areas in (treatable_px, found_px or {}):
        best = max(DEFAULT_PROCEDURES, key=lambda item: areas.get(item[0], 0), default=None)
        if best is not None and areas.get(best[0], 0) > 0:
            return best[1]
    return "vitiligo-camouflage"


def estimate_sessions(model: SessionModel, area_cm2: float | None) -> Sessions:
    """min..max sessions, plus one for every further `area_per_session_cm2` of treatable area."""
    if area_cm2 is None:
        return Sessions(
            low=model.min,
            high=model.max,
            rule=f"{model.min}-{model.max} sessions; area not calibrated, so no sessions added "
            "for a large area",
        )
    extra = max(0, math.ceil(area_cm2 / model.area_per_session_cm2) - 1)
    return Sessions(
        low=model.min + extra,
        high=model.max + extra,
        rule=f"{model.min}-{model.max} sessions + (ceil({area_cm2:.1f} cm² / "
        f"{model.area_per_session_cm2:g} cm² per session) - 1 = {extra}) = "
        f"{model.min + extra}-{model.max + extra}",
    )
