"""Clinical scores from class masks: SALT (alopecia) and F-VASI (facial vitiligo).

SALT (Severity of Alopecia Tool, Olsen et al. 2004): the scalp is photographed from the top,
back, left and right; each view's hair loss is the share of the scalp shown that has lost its
hair, in %; SALT = 0.40 x top + 0.24 x back + 0.18 x left + 0.18 x right (each view's weight is
its share of the scalp), 0..100. Bands: S0 no loss, S1 < 25 %, S2 25-49 %, S3 50-74 %,
S4 75-99 %, S5 100 % (on the score rounded to a whole percent).
Here a view's loss = pixels of the loss classes (thinning and scar by default) / scalp pixels,
where the scalp is every pixel of the photo except the calibration marker: frame each view on
the scalp (hair, face or background in the photo count as scalp and lower the loss).

F-VASI (Facial Vitiligo Area Scoring Index) with the fingertip unit (Kohli et al., J Am Acad
Dermatol 2021): the area of each facial vitiligo lesion in fingertip units (FTU, the palmar
surface of the distal phalanx of the patient's index finger; one hand, palm and fingers, is
32.1 FTU), summed (0..112 FTU for a whole face), each lesion weighted by its degree of
depigmentation (VASI steps 0, 10, 25, 50, 75, 90, 100 %). Here the lesion area comes from the
photo's calibration (mm per pixel) in the photo's plane: a face is curved, so areas near the
edge of a frontal photo are foreshortened (underestimated); photograph each part square-on. The
FTU is the patient's measured fingertip area when given, else 1/32.1 of a hand taken as 1 % of
the body surface (`DEFAULT_HAND_CM2`, an adult's 1.8 m²). Depigmentation is what the clinician
gives (default 100 %: complete), not measured from the photo. The same total is also given in
hand units (FTU / 32.1, about % of the body surface).
"""

from __future__ import annotations

import numpy as np

SALT_WEIGHTS = {"top": 0.40, "back": 0.24, "left": 0.18, "right": 0.18}
SALT_FORMULA = "SALT = 0.40 x top + 0.24 x back + 0.18 x left + 0.18 x right (% loss per view)"
FTU_PER_HAND = 32.1
DEFAULT_HAND_CM2 = 180.0  # 1 % of an adult's 1.8 m² body surface
VASI_STEPS = (0, 10, 25, 50, 75, 90, 100)


def salt_band(score: float) -> str:
    """S0..S5 of a SALT score (rounded to a whole percent first)."""
    rounded = round(score)
    if rounded <= 0:
        return "S0"
    if rounded >= 100:
        return "S5"
    return f"S{1 + min(3, rounded // 25)}"


def view_loss(
    mask: np.ndarray, loss_ids, excluded: np.ndarray | None = None
) -> tuple[int, int, float]:
    """Loss pixels, scalp pixels and % loss of one view (scalp: the photo minus `excluded`)."""
    scalp = np.ones(mask.shape, bool) if excluded is None else ~np.asarray(excluded, bool)
    loss = int(np.count_nonzero(np.isin(mask, list(loss_ids)) & scalp))
    area = int(np.count_nonzero(scalp))
    return loss, area, 0.0 if area == 0 else 100.0 * loss / area


def salt(views: dict[str, dict]) -> dict:
    """SALT from the four views; `views[name]` holds `loss_px`, `scalp_px` and anything to keep
    (photo, mask source). Returns per view: percent, weight, contribution, and the total."""
    missing = [name for name in SALT_WEIGHTS if name not in views]
    if missing:
        raise ValueError(f"SALT needs the {', '.join(missing)} view(s)")
    rows = {}
    total = 0.0
    for name, weight in SALT_WEIGHTS.items():
        view = views[name]
        percent = 0.0 if view["scalp_px"] == 0 else 100.0 * view["loss_px"] / view["scalp_px"]
        contribution = weight * percent
        total += contribution
        rows[name] = {
            **view,
            "loss_percent": round(percent, 2),
            "weight": weight,
            "contribution": round(contribution, 2),
            "computed": f"{view['loss_px']:,} loss px / {view['scalp_px']:,} scalp px = "
            f"{percent:.2f} %; x {weight:.2f} = {contribution:.2f}",
        }
    return {
        "score": "SALT",
        "salt": round(total, 2),
        "band": salt_band(total),
        "formula": SALT_FORMULA,
        "bands": "S0 0, S1 1-24, S2 25-49, S3 50-74, S4 75-99, S5 100 (whole percent)",
        "views": rows,
    }


def fingertip_cm2(fingertip: float | None, hand: float | None) -> tuple[float, str]:
    """The FTU area and how it was obtained."""
    if fingertip is not None:
        return fingertip, f"the patient's fingertip, {fingertip:g} cm² (given)"
    hand = DEFAULT_HAND_CM2 if hand is None else hand
    source = "given" if hand != DEFAULT_HAND_CM2 else "assumed: 1 % of 1.8 m² body surface"
    return hand / FTU_PER_HAND, f"hand {hand:g} cm² ({source}) / {FTU_PER_HAND}"


def fvasi(photos: list[dict], ftu_cm2: float, ftu_source: str, depigmentation: float) -> dict:
    """F-VASI over face photos; `photos[i]` holds `lesion_px`, `mm_per_pixel` and anything to
    keep. Uncalibrated photos cannot be scored (an error names them)."""
    if depigmentation not in VASI_STEPS:
        raise ValueError(f"depigmentation must be one of {VASI_STEPS} %, got {depigmentation:g}")
    uncalibrated = [p["photo"] for p in photos if p["mm_per_pixel"] is None]
    if uncalibrated:
        raise ValueError(
            "F-VASI needs lesion areas in cm²: no calibration for " + ", ".join(uncalibrated)
        )
    rows, total_ftu = [], 0.0
    for photo in photos:
        area_cm2 = photo["lesion_px"] * photo["mm_per_pixel"] ** 2 / 100.0
        units = area_cm2 / ftu_cm2
        total_ftu += units
        rows.append(
            {
                **photo,
                "lesion_cm2": round(area_cm2, 3),
                "ftu": round(units, 3),
                "computed": f"{photo['lesion_px']:,} px x ({photo['mm_per_pixel']:.4g} mm)² = "
                f"{area_cm2:.2f} cm²; / {ftu_cm2:.3g} cm² per FTU = {units:.2f} FTU",
            }
        )
    score = total_ftu * depigmentation / 100.0
    return {
        "score": "F-VASI",
        "fvasi_ftu": round(score, 3),
        "fvasi_hand_units": round(score / FTU_PER_HAND, 4),
        "lesion_ftu": round(total_ftu, 3),
        "ftu_cm2": round(ftu_cm2, 4),
        "ftu_source": ftu_source,
        "depigmentation_percent": depigmentation,
        "formula": (
            "F-VASI = sum over photos of lesion area / FTU area x depigmentation "
            f"({total_ftu:.2f} FTU x {depigmentation:g} % = {score:.2f} FTU); hand units = "
            f"FTU / {FTU_PER_HAND}"
        ),
        "assumptions": [
            "lesion area measured in the photo's plane: curved parts of the face far from "
            "square-on are underestimated",
            "photos must not overlap (a lesion in two photos counts twice)",
            "depigmentation is the clinician's grading (default 100 %), not measured",
        ],
        "photos": rows,
    }
