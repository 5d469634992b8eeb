"""Compare two plans of the same patient (two visits): area and patch count change per class."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from dermaseg.errors import InputError
from dermaseg.fileio import read_json
from dermaseg.infer.schema import Plan

SCALE_TOLERANCE = 0.25  # relative mm-per-pixel difference above which the photos' framing differs


def read_plan(path: Path) -> Plan:
    """A plan JSON written by `dermaseg plan`, validated against the schema."""
    data = read_json(path)  # a regular file, strict JSON, deep nesting refused
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InputError(path, f"not a dermaseg plan ({where}: {first['msg']})") from None
    except RecursionError:
        raise InputError(path, "not a dermaseg plan (nested too deeply)") from None


def _unit(before: Plan, after: Plan) -> tuple[str, list[str]]:
    """Compare in mm² when both plans are calibrated, else in px (with a warning)."""
    scales = [before.calibration.mm_per_pixel, after.calibration.mm_per_pixel]
    if None in scales:
        missing = [n for n, s in zip(("first", "second"), scales, strict=True) if s is None]
        return "px", [
            f"the {' and '.join(missing)} plan is not calibrated: areas compared in px, which "
            "depend on camera distance and zoom; use a marker or --mm-per-pixel"
        ]
    ratio = max(scales) / min(scales)
    if ratio - 1.0 > SCALE_TOLERANCE:
        return "mm2", [
            f"the photos' scales differ {ratio:.2f}x ({scales[0]:.4g} vs {scales[1]:.4g} mm/px): "
            "different framing; check the same body area is shown"
        ]
    return "mm2", []


def _change(before: float, after: float) -> dict:
    return {
        "before": before,
        "after": after,
        "change": after - before,
        "change_percent": None if before == 0 else 100.0 * (after - before) / before,
    }


def compare_plans(before: Plan, after: Plan) -> dict:
    """Per class: area before/after and its change (mm² when calibrated), patch counts."""
    unit, warnings = _unit(before, after)
    if before.source.name != after.source.name or before.source.sha256 != after.source.sha256:
        warnings.append(
            f"different mask sources ({before.source.name} vs {after.source.name}): part of the "
            "change may come from the model or the person drawing, not the skin"
        )
    after_by_name = {c.name: c for c in after.classes}
    classes = []
    for total in before.classes:
        if total.class_id == 0:
            continue
        other = after_by_name.get(total.name)
        if other is None:
            warnings.append(f"class {total.name} is not in the second plan")
            continue
        area = "area_mm2" if unit == "mm2" else "area_px"
        classes.append(
            {
                "class": total.name,
                "area": _change(getattr(total, area) or 0.0, getattr(other, area) or 0.0),
                "patches": _change(total.patch_count, other.patch_count),
            }
        )
    return {
        "before": before.photo.name,
        "after": after.photo.name,
        "unit": unit,
        "classes": classes,
        "treatable": _change(
            (before.treatable.area_mm2 if unit == "mm2" else before.treatable.area_px) or 0.0,
            (after.treatable.area_mm2 if unit == "mm2" else after.treatable.area_px) or 0.0,
        ),
        "warnings": warnings,
    }
