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
from dermaseg.infer import geometry, smp_density, tone
from dermaseg.infer import warning_codes as codes
from dermaseg.infer.analysis import MadePlan
from dermaseg.infer.compare import compare_plans, read_plan
from dermaseg.infer.hair_colour import MIN_HAIR_PIXELS, measure_hair_colour
from dermaseg.infer.planner import PlanSettings, min_patch
from dermaseg.infer.procedures import (
    CLINIC,
    DEFAULT,
    DEFAULT_PROCEDURES,
    ClinicConfig,
    Procedure,
    apply_overrides,
    choose_procedure,
    estimate_sessions,
    load_procedure,
    overridden_keys,
    read_clinic_config,
)
from dermaseg.infer.review_flags import THRESHOLDS
from dermaseg.infer.schema import (
    ClassStability,
    Number,
    PigmentTarget,
    Plan,
    PlanWarning,
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

    def configured(self, name: str) -> tuple[Procedure, frozenset[str]]:
        """The shipped procedure `name` with the clinic's and the command line's numbers, and
        the dotted keys they set."""
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
        return procedure, frozenset(overridden_keys(overrides) | set(command_line))

    def choose(
        self,
        mask: np.ndarray,
        taxonomy: Taxonomy,
        base: PlanSettings | None = None,
        mm_per_pixel: float | None = None,
        working_size: int | None = None,
    ) -> ChosenProcedure | None:
        """The procedure for this photo with the clinic's numbers applied: the one given, else
        the one with the largest treatable area after its minimum-patch rule (stray pixels never
        decide). None when no procedure treats any of the model's classes."""
        base = base or PlanSettings()
        defaults = [(c, p) for c, p in DEFAULT_PROCEDURES if c in taxonomy.names]
        name = self.name
        if name is None:
            if not defaults:
                return None
            areas = geometry.component_areas(mask, range(1, taxonomy.num_classes))
            treatable, found = {}, {}
            for class_name, procedure_name in defaults:
                procedure, _ = self.configured(procedure_name)
                settings = dataclasses.replace(
                    base, min_patch_area_mm2=procedure.min_patch_area_mm2
                )
                minimum = min_patch(settings, mm_per_pixel, mask.shape, working_size)
                sizes = areas[taxonomy.names.index(class_name)]
                treatable[class_name] = int(sizes[sizes >= minimum.px].sum())
                found[class_name] = int(sizes.sum())
            name = choose_procedure(treatable, found)
        procedure, keys = self.configured(name)
        others = tuple((c, p) for c, p in defaults if p != name and c not in procedure.classes)
        return ChosenProcedure(
            procedure, "option" if self.name else "treatable area", keys, self.previous, others
        )


@dataclass(frozen=True)
class ChosenProcedure:
    procedure: Procedure
    chosen_by: str
    clinic_keys: frozenset[str]  # dotted keys the clinic set
    previous: Plan | None
    others: tuple[tuple[str, str], ...] = ()  # (class, procedure) treated by other procedures

    def source(self, *keys: str) -> str:
        return CLINIC if self.clinic_keys.intersection(keys) else DEFAULT

    def plan_settings(self, base: PlanSettings) -> PlanSettings:
        """The planner's settings with this procedure's classes, minimum area and margin."""
        return dataclasses.replace(
            base,
            treat_classes=self.procedure.classes,
            min_patch_area_mm2=self.procedure.min_patch_area_mm2,
            margin_mm=self.procedure.margin_mm,
            other_procedures=self.others,
        )

    def attach(self, made: MadePlan, taxonomy: Taxonomy) -> Plan:
        """`made.plan` (photo pixels) with its procedure section; a hair target is measured on
        `made.analysis` (analysed pixels), in the treated patches' regions."""
        plan = made.plan
        described = self.describe(made, taxonomy)
        warnings = codes.unique([*plan.warnings, *described.warnings])
        return plan.model_copy(update={"procedure": described, "warnings": warnings})

    def describe(self, made: MadePlan, taxonomy: Taxonomy) -> ProcedurePlan:
        plan = made.plan
        proc = self.procedure
        warnings: list[PlanWarning] = []
        missing = [name for name in proc.classes if name not in taxonomy.names]
        if missing:
            warnings.append(codes.warning("class-not-in-model", classes=", ".join(missing)))
        treated = [p.id for p in plan.patches if p.treatable]
        minimum = self._minimum(plan)
        if not treated:
            shown = f"{minimum.value:,.0f} px"
            if minimum.unit == "mm2":
                shown = f"{minimum.value:g} mm²"
            warnings.append(
                codes.warning("nothing-to-treat", classes=" or ".join(proc.classes), minimum=shown)
            )
        density = None
        if proc.pigment_target == "hair":
            target = _hair_target(made, taxonomy, proc, warnings)
            density = smp_density.for_plan(made, taxonomy, proc.classes)
            warnings += [
                codes.warning("smp-dots", reason=w)
                for w in density.warnings
                # said once already, by no-marker / uncalibrated and by light-hair
                if not w.startswith(("the photo is not calibrated", "hair lighter than the scalp"))
            ]
        else:
            target = skin_target(plan, warnings)
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
            min_patch_area=minimum,
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

    def _minimum(self, plan: Plan) -> Number:
        """The minimum patch size that applied: the profile's mm² when calibrated, else the
        default in px relative to the photo (`planner.min_patch`)."""
        if plan.calibration.mm_per_pixel is None:
            return Number(value=plan.treatable.min_patch_area_px, unit="px", source="default")
        return Number(
            value=self.procedure.min_patch_area_mm2,
            unit="mm2",
            source=self.source("min_patch_area_mm2"),
        )

    def _stability(self, plan: Plan, previous: Plan, warnings: list[PlanWarning]) -> Stability:
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
        if unstable:
            changes = ", ".join(
                f"{c.class_name} "
                + ("appeared" if c.change_percent is None else f"grew {c.change_percent:.0f}%")
                for c in unstable
            )
            warnings.append(
                codes.warning(
                    "unstable", changes=changes, before=report["before"], threshold=threshold
                )
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


def skin_target(plan: Plan, warnings: list[PlanWarning]) -> PigmentTarget:
    """Pixel-weighted mean of the skin around each treated patch (whole-photo skin if none).

    Only ring pixels the photo's skin model calls skin count. No colour is offered (`withheld`)
    when too little of the rings is skin or the skin there varies too much (`review_flags`'s
    thresholds), or when the photo had too little skin to fit a skin model."""
    limits = THRESHOLDS
    treated = [p for p in plan.patches if p.treatable and p.tone is not None]
    surrounds = [p.tone for p in treated if p.tone.surround is not None]
    method = (
        "skin in a ring around each treated patch, kept where the photo's own skin model (CIELAB) "
        "calls it skin (hair, clothes, background left out), weighted by pixels"
    )
    rings = [t for t in (p.tone for p in treated) if t.skin_share is not None]
    share = None
    if rings:
        kept = sum(0 if t.surround is None else t.surround.pixels for t in rings)
        whole = sum(
            (t.surround.pixels / t.skin_share) if t.surround and t.skin_share else 0 for t in rings
        )
        share = round(kept / whole, 4) if whole else 0.0
    if treated and not rings:
        return _withheld(
            "the photo shows too little skin to model its colour", method, None, warnings
        )
    if not surrounds:
        if plan.skin_tone is None:
            warnings.append(codes.warning("no-skin"))
        if treated:
            return _withheld("no skin around the treated patches", method, share, warnings)
        return PigmentTarget(
            kind="skin",
            tone=plan.skin_tone,
            spread_delta_e76=None,
            method="bare skin of the whole photo (no treated patch has skin around it)",
        )
    pixels = np.array([s.surround.pixels for s in surrounds], np.float64)
    lab = (np.array([s.surround.lab for s in surrounds]) * pixels[:, None]).sum(axis=0)
    target = tone.make_tone(lab / pixels.sum(), int(pixels.sum()))
    spread = max(
        max(tone.delta_e76(s.surround.lab, target.lab), s.spread_delta_e76 or 0.0)
        for s in surrounds
    )
    spread_number = Number(value=round(spread, 2), unit=DELTA_E, source=MEASURED)
    if share is not None and share < limits.min_target_skin_share:
        reason = (
            f"only {100 * share:.0f} % of the ring around the treated patches is skin "
            f"(< {100 * limits.min_target_skin_share:g} %)"
        )
        return _withheld(reason, method, share, warnings, spread_number)
    if spread > limits.max_target_spread_delta_e76:
        reason = (
            f"the skin around the treated patches varies too much (ΔE76 {spread:.1f} > "
            f"{limits.max_target_spread_delta_e76:g})"
        )
        return _withheld(reason, method, share, warnings, spread_number)
    return PigmentTarget(
        kind="skin",
        tone=target,
        spread_delta_e76=spread_number,
        method=method,
        skin_share=share,
    )


def _withheld(
    reason: str,
    method: str,
    share: float | None,
    warnings: list[PlanWarning],
    spread: Number | None = None,
) -> PigmentTarget:
    warnings.append(codes.warning("pigment-withheld", reason=reason))
    return PigmentTarget(
        kind="skin",
        tone=None,
        spread_delta_e76=spread,
        method=method,
        withheld=reason,
        skin_share=share,
    )


def _hair_target(
    made: MadePlan, taxonomy: Taxonomy, proc: Procedure, warnings: list[PlanWarning]
) -> PigmentTarget:
    """Colour of the hair strands in and around the treated patches (`hair_colour`), measured
    in the analysed pixels; pixel counts are reported in the photo's own pixels."""
    rgb, scale = made.analysis.rgb, made.analysis.scale
    region, excluded = smp_density.treated_region(made, taxonomy, proc.classes)
    method = "hair strands in and around the treated area, unmixed from the scalp behind them"
    if not region.any():
        return PigmentTarget(kind="hair", tone=None, spread_delta_e76=None, method=method)
    dark = tone.hair_is_dark(rgb, bare_hint=region)
    colour, hair_pixels = measure_hair_colour(rgb, region, excluded, dark)
    if colour is None or hair_pixels < MIN_HAIR_PIXELS:
        state = "not measured" if colour is None else "unreliable"
        pixels = hair_pixels * scale**2
        warnings.append(codes.warning("few-hair-pixels", pixels=pixels, state=state))
    if not dark:
        warnings.append(codes.warning("light-hair"))
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
