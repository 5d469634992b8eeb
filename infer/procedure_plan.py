"""A plan in the clinic's terms: the procedure, what it treats, the pigment target, the sessions
and, given a previous plan, whether the treated classes are stable. Every number says where it
came from: measured from the photo, a clinic setting (clinic config or command line) or the
procedure profile's default."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer import smp_density, tone
from dermaseg.infer.compare import compare_plans, read_plan
from dermaseg.infer.hair_colour import MIN_HAIR_PIXELS, measure_hair_colour
from dermaseg.infer.planner import PlanSettings
from dermaseg.infer.procedures import (
    CLINIC,
    DEFAULT,
    ClinicConfig,
    Procedure,
    apply_overrides,
    choose_procedure,
    estimate_sessions,
    load_procedure,
    overridden_keys,
    read_clinic_config,
)
from dermaseg.infer.schema import (
    ClassStability,
    Number,
    PigmentTarget,
    Plan,
    ProcedurePlan,
    SessionEstimate,
    Span,
    Stability,
)

MEASURED = "measured"
DELTA_E = "ΔE76"


@dataclass(frozen=True)
class ProcedureOptions:
    """What the clinic asked for: a procedure (None: chosen from the classes found), its clinic
    config, numbers given on the command line, and the patient's previous plan."""

    name: str | None = None
    clinic: ClinicConfig | None = None
    clinic_path: Path | None = None
    min_patch_mm2: float | None = None
    margin_mm: float | None = None
    previous: Plan | None = None

    def choose(self, mask: np.ndarray, taxonomy: Taxonomy) -> ChosenProcedure:
        """The procedure for this photo with the clinic's numbers applied."""
        counts = np.bincount(mask.ravel(), minlength=taxonomy.num_classes)
        name = self.name or choose_procedure({c.name: int(counts[c.id]) for c in taxonomy.classes})
        procedure = load_procedure(name)
        overrides = self.clinic.procedures.get(name, {}) if self.clinic is not None else {}
        if overrides:
            procedure = apply_overrides(procedure, overrides, self.clinic_path or "clinic config")
        command_line = {
            key: value
            for key, value in (
                ("min_patch_area_mm2", self.min_patch_mm2),
                ("margin_mm", self.margin_mm),
            )
            if value is not None
        }
        if command_line:
            procedure = apply_overrides(procedure, command_line, "command line")
        return ChosenProcedure(
            procedure,
            "option" if self.name else "classes found",
            frozenset(overridden_keys(overrides) | set(command_line)),
            self.previous,
        )


@dataclass(frozen=True)
class ChosenProcedure:
    procedure: Procedure
    chosen_by: str
    clinic_keys: frozenset[str]  # dotted keys the clinic set
    previous: Plan | None

    def source(self, *keys: str) -> str:
        return CLINIC if self.clinic_keys.intersection(keys) else DEFAULT

    def plan_settings(self, base: PlanSettings) -> PlanSettings:
        """The planner's settings with this procedure's classes, minimum area and margin."""
        return dataclasses.replace(
            base,
            treat_classes=self.procedure.classes,
            min_patch_area_mm2=self.procedure.min_patch_area_mm2,
            margin_mm=self.procedure.margin_mm,
        )

    def attach(
        self, plan: Plan, analysed: Plan, rgb: np.ndarray, mask: np.ndarray, taxonomy: Taxonomy
    ) -> Plan:
        """`plan` with its procedure section; `analysed`, `rgb` and `mask` share their pixels."""
        described = self.describe(plan, analysed, rgb, mask, taxonomy)
        warnings = [*plan.warnings, *described.warnings]
        return plan.model_copy(update={"procedure": described, "warnings": warnings})

    def describe(
        self, plan: Plan, analysed: Plan, rgb: np.ndarray, mask: np.ndarray, taxonomy: Taxonomy
    ) -> ProcedurePlan:
        proc = self.procedure
        warnings = [
            f"class {name} is not one of the model's classes"
            for name in proc.classes
            if name not in taxonomy.names
        ]
        treated = [p.id for p in plan.patches if p.treatable]
        if not treated:
            warnings.append(
                f"no {' or '.join(proc.classes)} patch of at least "
                f"{proc.min_patch_area_mm2:g} mm² was found: nothing to treat"
            )
        density = None
        if proc.pigment_target == "hair":
            scale = plan.photo.analysis_scale
            target = _hair_target(analysed, rgb, mask, taxonomy, proc, scale, warnings)
            density = smp_density.for_plan(analysed, rgb, mask, taxonomy, proc.classes)
            warnings += [f"SMP dots: {w}" for w in density.warnings]
        else:
            target = _skin_target(plan, warnings)
        area_cm2 = plan.treatable.area_cm2
        sessions = estimate_sessions(proc.sessions, area_cm2)
        session_keys = ("sessions.min", "sessions.max", "sessions.area_per_session_cm2")
        stability = (
            None if self.previous is None else self._stability(plan, self.previous, warnings)
        )
        return ProcedurePlan(
            name=proc.name,
            title=proc.title,
            chosen_by=self.chosen_by,
            classes=list(proc.classes),
            treated_patch_ids=treated,
            min_patch_area=Number(
                value=proc.min_patch_area_mm2,
                unit="mm2",
                source=self.source("min_patch_area_mm2"),
            ),
            margin=Number(value=proc.margin_mm, unit="mm", source=self.source("margin_mm")),
            patch_area=_area(plan.treatable.patch_area_mm2, plan.treatable.patch_area_px),
            treatable_area=_area(plan.treatable.area_mm2, plan.treatable.area_px),
            pigment_target=target,
            sessions=SessionEstimate(
                low=sessions.low,
                high=sessions.high,
                rule=sessions.rule,
                source=self.source(*session_keys),
            ),
            interval_weeks=Span(
                low=proc.sessions.interval_weeks[0],
                high=proc.sessions.interval_weeks[1],
                unit="weeks",
                source=self.source("sessions.interval_weeks"),
            ),
            touch_up_months=Span(
                low=proc.sessions.touch_up_months[0],
                high=proc.sessions.touch_up_months[1],
                unit="months",
                source=self.source("sessions.touch_up_months"),
            ),
            stability=stability,
            smp_density=density,
            warnings=warnings,
        )

    def _stability(self, plan: Plan, previous: Plan, warnings: list[str]) -> Stability:
        """Area change of the procedure's classes since the previous plan."""
        report = compare_plans(previous, plan)
        threshold = self.procedure.stability_change_percent
        classes = [
            ClassStability(
                class_name=row["class"],
                before=row["area"]["before"],
                after=row["area"]["after"],
                change_percent=row["area"]["change_percent"],
            )
            for row in report["classes"]
            if row["class"] in self.procedure.classes
        ]
        unstable = [c for c in classes if _grew(c, threshold)]
        for c in unstable:
            growth = "appeared" if c.change_percent is None else f"grew {c.change_percent:.0f}%"
            warnings.append(
                f"{c.class_name} {growth} since {report['before']} (more than {threshold:g}%): "
                "not stable; consider waiting before treating"
            )
        return Stability(
            previous_photo=report["before"],
            unit=report["unit"],
            classes=classes,
            threshold_percent=Number(
                value=threshold, unit="%", source=self.source("stability_change_percent")
            ),
            stable=not unstable,
            warnings=report["warnings"],
        )


def _grew(change: ClassStability, threshold: float) -> bool:
    if change.change_percent is None:
        return change.after > 0
    return change.change_percent > threshold


def _area(mm2: float | None, px: int) -> Number:
    if mm2 is None:
        return Number(value=px, unit="px", source=MEASURED)
    return Number(value=round(mm2 / 100.0, 4), unit="cm2", source=MEASURED)


def _skin_target(plan: Plan, warnings: list[str]) -> PigmentTarget:
    """Pixel-weighted mean of the skin around each treated patch (whole-photo skin if none)."""
    surrounds = [
        p.tone.surround
        for p in plan.patches
        if p.treatable and p.tone is not None and p.tone.surround is not None
    ]
    if not surrounds:
        if plan.skin_tone is None:
            warnings.append("no bare skin to match the pigment to was found")
        return PigmentTarget(
            kind="skin",
            tone=plan.skin_tone,
            spread_delta_e76=None,
            method="bare skin of the whole photo (no treated patch has skin around it)",
        )
    pixels = np.array([s.pixels for s in surrounds], np.float64)
    lab = (np.array([s.lab for s in surrounds]) * pixels[:, None]).sum(axis=0) / pixels.sum()
    target = tone.make_tone(lab, int(pixels.sum()))
    spread = max(tone.delta_e76(s.lab, target.lab) for s in surrounds)
    return PigmentTarget(
        kind="skin",
        tone=target,
        spread_delta_e76=Number(value=round(spread, 2), unit=DELTA_E, source=MEASURED),
        method=f"skin in a ring around each of {len(surrounds)} treated patch(es), "
        "hair left out, weighted by pixels",
    )


def _hair_target(
    analysed: Plan,
    rgb: np.ndarray,
    mask: np.ndarray,
    taxonomy: Taxonomy,
    proc: Procedure,
    scale: int,
    warnings: list[str],
) -> PigmentTarget:
    """Colour of the hair strands in and around the treated patches (`hair_colour`); `scale`:
    the photo's analysis scale (pixel counts are reported in the photo's own pixels)."""
    region, excluded = smp_density.treated_region(analysed, mask, taxonomy, proc.classes)
    method = "hair strands in and around the treated area, unmixed from the scalp behind them"
    if not region.any():
        return PigmentTarget(kind="hair", tone=None, spread_delta_e76=None, method=method)
    dark = tone.hair_is_dark(rgb, bare_hint=region)
    colour, hair_pixels = measure_hair_colour(rgb, region, excluded, dark)
    if colour is None or hair_pixels < MIN_HAIR_PIXELS:
        warnings.append(
            f"only {hair_pixels * scale**2:,} hair pixels found in and around the treated area: "
            + ("hair colour not measured" if colour is None else "hair colour unreliable")
            + "; match the pigment to the patient's hair by eye"
        )
    if not dark:
        warnings.append("hair lighter than the scalp (grey or blond): hair colour less reliable")
    if colour is None:
        return PigmentTarget(kind="hair", tone=None, spread_delta_e76=None, method=method)
    return PigmentTarget(
        kind="hair",
        tone=colour.tone.model_copy(update={"pixels": hair_pixels * scale**2}),
        spread_delta_e76=Number(value=colour.spread_delta_e, unit=DELTA_E, source=MEASURED),
        method=method,
    )


def procedure_options(
    name: str | None,
    clinic_config: Path | None,
    previous: Path | None,
    min_patch_mm2: float | None,
    margin_mm: float | None,
) -> ProcedureOptions:
    """Options from the command line, each file read and checked before any photo is planned."""
    if name is not None:
        load_procedure(name)
    return ProcedureOptions(
        name=name,
        clinic=None if clinic_config is None else read_clinic_config(clinic_config),
        clinic_path=clinic_config,
        min_patch_mm2=min_patch_mm2,
        margin_mm=margin_mm,
        previous=None if previous is None else read_plan(previous),
    )
