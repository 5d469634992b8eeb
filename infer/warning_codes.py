"""Plan warnings: one per cause, each with a stable code and one text.

Tools (the index, the review desk, scripts) key on the code; people read the text. A code is
never reused for another cause; `unique` keeps one warning per code, so a cause met twice (the
calibration and the planner both noticing no scale, a procedure listing the same problem for
two patches) is said once.
"""

from __future__ import annotations

from collections.abc import Iterable

from dermaseg.infer.schema import PlanWarning

# code -> text template (str.format fields)
CODES: dict[str, str] = {
    "no-marker": "no ArUco marker ({dictionary}) found: areas and lengths are in px only; put a "
    "marker in the photo or give --mm-per-pixel",
    "uncalibrated": "not calibrated (marker detection off, no --mm-per-pixel): areas and lengths "
    "are in px only",
    "several-markers": "{count} ArUco markers found (ids {ids}); used id {chosen} ({how})",
    "marker-tilted": "the marker looks tilted (side lengths differ by {percent:.0f} %); "
    "photograph square-on, areas will be off",
    "margin-ignored": "blending margin of {margin_mm:g} mm ignored: the photo is not calibrated",
    "nothing-to-treat": "no {classes} patch of at least {minimum} was found: nothing to treat",
    "other-procedure": "{what} would be treated by another procedure ({procedures}); plan it "
    "separately with --procedure",
    "class-not-in-model": "the procedure treats {classes}, which the model does not segment",
    "no-procedure": "no procedure treats this model's classes ({classes}): the model's "
    "treatable classes are planned without a procedure",
    "no-skin": "no bare skin to match the pigment to was found",
    "pigment-withheld": "no skin pigment target offered: {reason}",
    "few-hair-pixels": "only {pixels:,} hair pixels found in and around the treated area: hair "
    "colour {state}; match the pigment to the patient's hair by eye",
    "light-hair": "hair lighter than the scalp (grey or blond): hair colour less reliable",
    "unstable": "{changes} since {before} (more than {threshold:g}%): not stable; consider "
    "waiting before treating",
    "smp-dots": "SMP dots: {reason}",
    "previous-not-in-folder": "previous plan {name} is not in the plan folder: stability was "
    "not assessed again",
    "postprocess-invalid": "the model's post-processing metadata could not be read ({reason}); "
    "the raw mask was used",
}


def warning(code: str, **fields: object) -> PlanWarning:
    """The warning `code` with its text filled in."""
    return PlanWarning(code=code, text=CODES[code].format(**fields))


def unique(warnings: Iterable[PlanWarning]) -> list[PlanWarning]:
    """One warning per code, in first-seen order; different texts for one code are joined."""
    texts: dict[str, list[str]] = {}
    for item in warnings:
        seen = texts.setdefault(item.code, [])
        if item.text not in seen:
            seen.append(item.text)
    return [PlanWarning(code=code, text="; ".join(t)) for code, t in texts.items()]
