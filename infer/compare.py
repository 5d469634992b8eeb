"""Compare two visits of the same patient: plan totals, and with the photos a change map.

Without photos, the two plans' totals are compared (area and patch count per class). With the
photos (and the plans' masks), the second photo is aligned onto the first (`align`) and the
masks compared pixel by pixel on the first photo's grid (`change_map`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from dermaseg.datasets.images import load_image, load_mask
from dermaseg.errors import InputError
from dermaseg.fileio import photo_sha256, read_json
from dermaseg.infer.align import align, seen_in_b, to_a
from dermaseg.infer.calibration import marker_polygon_mask
from dermaseg.infer.change_map import CATEGORIES, change_map, patch_labels
from dermaseg.infer.schema import Plan
from dermaseg.infer.tone import delta_e76

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


# ---------------------------------------------------------------------------------------------
# two visits with their photos: alignment and change map

CALIBRATION_TOLERANCE = 0.10  # relative disagreement of the scales once the zoom is allowed for
SKIN_TONE_TOLERANCE = 12.0  # ΔE76 between the photos' overall skin tones above which sites differ


@dataclass(frozen=True)
class Visit:
    """One visit: its plan, and (when found) its photo and class mask, in the photo's pixels."""

    plan_path: Path
    plan: Plan
    photo_path: Path | None = None
    mask_path: Path | None = None


def plan_stem(plan_path: Path) -> str:
    """NAME of NAME.plan.json (the name every output of that photo shares)."""
    name = Path(plan_path).name
    return name[: -len(".plan.json")] if name.endswith(".plan.json") else Path(name).stem


def find_visit(
    plan_path: Path, photo: Path | None, mask: Path | None, warnings: list[str]
) -> Visit:
    """The plan with its photo (given, else the plan's photo name next to the plan) and mask
    (given, else NAME.mask.png next to the plan); a photo whose bytes are not the planned photo's
    is an error when given and ignored with a warning when found."""
    plan = read_plan(plan_path)
    folder = Path(plan_path).parent
    if photo is None:
        candidate = folder / plan.photo.name
        if candidate.is_file():
            if photo_sha256(candidate) == plan.photo.sha256:
                photo = candidate
            else:
                warnings.append(f"{candidate} is not the photo {plan_path.name} was made from")
    elif photo_sha256(photo) != plan.photo.sha256:
        raise InputError(photo, f"not the photo {plan_path.name} was made from (sha256 differs)")
    if mask is None:
        candidate = folder / f"{plan_stem(plan_path)}.mask.png"
        mask = candidate if candidate.is_file() else None
    return Visit(Path(plan_path), plan, photo, mask)


def plan_warnings(before: Plan, after: Plan) -> list[str]:
    """What makes two plans hard to compare: procedures, models, skin tones, class lists."""
    warnings = []
    procedures = [p.procedure.name if p.procedure else None for p in (before, after)]
    if None not in procedures and procedures[0] != procedures[1]:
        warnings.append(
            f"the plans are for different procedures ({procedures[0]} vs {procedures[1]})"
        )
    if before.source.kind == after.source.kind == "model" and (
        before.source.sha256 != after.source.sha256
    ):
        warnings.append(
            f"the plans were made by different models ({before.source.name} "
            f"{before.source.sha256[:12]} vs {after.source.name} {after.source.sha256[:12]}): "
            "part of the change may be the model's"
        )
    elif before.source.kind != after.source.kind:
        warnings.append(
            f"one plan comes from a model and the other from a drawn mask ({before.source.kind} "
            f"vs {after.source.kind})"
        )
    tones = [p.skin_tone for p in (before, after)]
    if None not in tones:
        difference = delta_e76(tones[0].lab, tones[1].lab)
        if difference > SKIN_TONE_TOLERANCE:
            warnings.append(
                f"the photos' skin tones differ by ΔE76 {difference:.0f} ({tones[0].hex} vs "
                f"{tones[1].hex}): different sites, or very different light"
            )
    names = [[(c.class_id, c.name) for c in p.classes] for p in (before, after)]
    if names[0] != names[1]:
        warnings.append("the plans' class lists differ: only classes with the same id and name")
    return warnings


def common_classes(before: Plan, after: Plan) -> dict[int, str]:
    """Class id -> name for the non-background classes both plans share (same id and name)."""
    theirs = {(c.class_id, c.name) for c in after.classes}
    return {
        c.class_id: c.name
        for c in before.classes
        if c.class_id > 0 and (c.class_id, c.name) in theirs
    }


def _load_mask(visit: Visit) -> np.ndarray:
    mask = load_mask(visit.mask_path)
    size = (visit.plan.photo.width, visit.plan.photo.height)
    if mask.shape[::-1] != size:
        raise InputError(
            visit.mask_path,
            f"mask is {mask.shape[1]}x{mask.shape[0]}, the photo {size[0]}x{size[1]}",
        )
    return mask


def _scale(before: Plan, after: Plan, zoom: float, warnings: list[str]) -> tuple[float | None, str]:
    """mm per pixel of A's photo for the change map, and where it came from."""
    scale_a, scale_b = before.calibration.mm_per_pixel, after.calibration.mm_per_pixel
    if scale_a is not None and scale_b is not None:
        implied = scale_b * zoom  # B's scale carried to A's pixels through the alignment
        gap = implied / scale_a - 1.0
        if abs(gap) > CALIBRATION_TOLERANCE:
            warnings.append(
                f"the calibrations differ by {100 * gap:+.0f} % once the zoom is allowed for "
                f"({scale_a:.4g} mm/px vs {implied:.4g} from the second photo): check the marker "
                "size and that the photos show the same site"
            )
        return scale_a, f"first photo's calibration ({before.calibration.method})"
    if scale_a is not None:
        return scale_a, f"first photo's calibration ({before.calibration.method})"
    if scale_b is not None:
        warnings.append(
            "only the second photo is calibrated: its scale is carried to the first through the "
            "alignment at the photo's centre (perspective makes it vary across the photo)"
        )
        return scale_b * zoom, "second photo's calibration carried through the alignment"
    warnings.append("neither photo is calibrated: change in px of the first photo")
    return None, "none"


def _mm2(px: int, scale: float | None) -> float | None:
    return None if scale is None else round(px * scale**2, 3)


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(100.0 * part / whole, 2)


def compare_visits(first: Visit, second: Visit) -> tuple[dict, dict]:
    """Align the second visit's photo onto the first's, map the change (`change_map`), and report
    it in mm² (or px) and %; returns the report and the images for the overlay (`rgb_a`,
    `rgb_b_on_a`, `change`, `labels_a`, `labels_b_on_a`). Raises AlignmentError when poor."""
    before, after = first.plan, second.plan
    warnings: list[str] = []
    rgb_a, rgb_b = load_image(first.photo_path), load_image(second.photo_path)
    for visit, rgb in ((first, rgb_a), (second, rgb_b)):
        if rgb.shape[1::-1] != (visit.plan.photo.width, visit.plan.photo.height):
            raise InputError(visit.photo_path, "photo size differs from the plan's")
    mask_a, mask_b = _load_mask(first), _load_mask(second)
    classes = common_classes(before, after)
    skips = []
    for plan, mask in ((before, mask_a), (after, mask_b)):
        skip = mask > 0
        marker = marker_polygon_mask(plan.calibration, mask.shape)
        skips.append(skip if marker is None else skip | marker)
    markers = [p.calibration.marker for p in (before, after)]
    alignment = align(
        rgb_a,
        rgb_b,
        skip_a=skips[0],
        skip_b=skips[1],
        marker_a=None if markers[0] is None else markers[0].corners_px,
        marker_b=None if markers[1] is None else markers[1].corners_px,
    )
    warnings += alignment.warnings
    scale, scale_source = _scale(before, after, alignment.zoom, warnings)
    labels_a, classes_a = patch_labels(mask_a, classes)
    labels_b, classes_b = patch_labels(mask_b, classes)
    for visit, found in ((first, classes_a), (second, classes_b)):
        planned = sum(1 for p in visit.plan.patches if p.class_id in classes)
        if planned != len(found):
            warnings.append(
                f"{visit.mask_path.name} has {len(found)} patches, {visit.plan_path.name} "
                f"{planned}: the mask is not the plan's"
            )
    shape = mask_a.shape
    labels_b_on_a = to_a(labels_b.astype(np.float32), alignment.homography, shape, nearest=True)
    labels_b_on_a = labels_b_on_a.astype(np.int32)
    seen = seen_in_b(alignment.homography, shape, mask_b.shape)
    result = change_map(labels_a, classes_a, labels_b_on_a, classes_b, seen, classes)
    class_rows = []
    for row in result.classes:
        before_px = row["before_px"]
        if before_px == 0 and row["after_px"] == 0:
            continue
        entry = {"class": classes[row["class_id"]], **row}
        entry["before_mm2"], entry["after_mm2"] = (
            _mm2(before_px, scale),
            _mm2(row["after_px"], scale),
        )
        for name in CATEGORIES:
            entry[f"{name}_mm2"] = _mm2(row[f"{name}_px"], scale)
            entry[f"{name}_percent"] = _percent(row[f"{name}_px"], before_px)
        entry["change_percent"] = _percent(row["after_px"] - before_px, before_px)
        class_rows.append(entry)
    patches = [
        {
            **p,
            "class": classes[p["class_id"]],
            "before_mm2": _mm2(p["before_px"], scale),
            "after_mm2": _mm2(p["after_px"], scale),
            "change_percent": _percent(p["after_px"] - p["before_px"], p["before_px"]),
        }
        for p in result.patches
    ]
    new = [
        {**p, "class": classes[p["class_id"]], "after_mm2": _mm2(p["after_px"], scale)}
        for p in result.new_patches
    ]
    report = {
        "photos": {"before": str(first.photo_path), "after": str(second.photo_path)},
        "masks": {"before": str(first.mask_path), "after": str(second.mask_path)},
        "alignment": alignment.summary(),
        "change": {
            "unit": "mm2" if scale is not None else "px",
            "mm_per_pixel": scale,
            "scale_source": scale_source,
            "seen_fraction": round(float(seen.mean()), 4),
            "method": (
                "the second photo's mask resampled onto the first photo's pixels (nearest "
                "neighbour) with the alignment's homography; areas are pixel counts of the first "
                "photo within what both photos show, times its mm per pixel squared; % of the "
                "class's (or patch's) area at the first visit"
            ),
            "classes": class_rows,
            "patches": patches,
            "new_patches": new,
        },
        "warnings": warnings,
    }
    b_on_a = to_a(rgb_b, alignment.homography, shape, nearest=False)
    images = {
        "rgb_a": rgb_a,
        "rgb_b_on_a": b_on_a,
        "change": result,
        "labels_a": labels_a,
        "labels_b_on_a": labels_b_on_a,
    }
    return report, images
