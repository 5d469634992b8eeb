"""Trustworthy plans: decisions by area, specks, one warning per cause, the review section (each
reason code), skin-only pigment rings and the model's learned post-processing. Real files and
real onnxruntime sessions of a rule model (`tests/rule_model.py`) whose confidence the photo
sets exactly: red above 127 is vitiligo, and the further red is from 127.5 the surer."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.errors import DermasegError
from dermaseg.infer import tone
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings, PlanSummary
from dermaseg.infer.postprocess import apply_postprocess, read_postprocess
from dermaseg.infer.procedure_plan import ProcedureOptions
from dermaseg.infer.report_html import render_index
from dermaseg.infer.review_flags import REASON_CODES, THRESHOLDS, review_plan
from dermaseg.infer.schema import Plan
from dermaseg.infer.session import PlanningModel
from dermaseg.infer.skin_model import fit_skin_model
from tests.conftest import run_cli, write_image
from tests.plan_factory import synthetic_photo
from tests.rule_model import write_rule_model

SKIN = (60, 40, 30)  # dark skin: red far below 128, a sure "background" for the rule model
PATCH = (235, 200, 185)  # a depigmented patch: red far above 128, a sure "vitiligo"
CLOTH = (30, 40, 160)  # a blue dress


@pytest.fixture(scope="module")
def rule_model(tmp_path_factory: pytest.TempPathFactory) -> PlanningModel:
    return PlanningModel(write_rule_model(tmp_path_factory.mktemp("rule") / "rule.onnx"))


def skin_photo(height: int = 240, width: int = 320, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = np.array(SKIN, np.float64) + rng.normal(0, 3, (height, width, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8)


def paint(rgb: np.ndarray, colour, centre, radius) -> np.ndarray:
    cv2.circle(rgb, centre, radius, tuple(int(c) for c in colour), cv2.FILLED)
    return rgb


def plan_with_model(
    model: PlanningModel, tmp_path: Path, rgb: np.ndarray, mm_per_pixel: float | None = 0.1
) -> Plan:
    path = write_image(tmp_path / "photo.png", rgb)
    planner = BatchPlanner(
        tmp_path / "out",
        model=model,
        calibration=CalibrationSettings(mm_per_pixel=mm_per_pixel, detect_marker=False),
        procedures=ProcedureOptions(),
        overwrite=True,
    )
    return planner.plan_photo(path, "photo").plan


def plan_with_mask(
    tmp_path: Path, rgb: np.ndarray, mask: np.ndarray, mm_per_pixel: float | None = None
) -> Plan:
    photo = write_image(tmp_path / "photo.png", rgb)
    mask_path = tmp_path / "photo.mask.png"
    mask_path.write_bytes(encode_png(mask, palette=DEFAULT_TAXONOMY.palette))
    planner = BatchPlanner(
        tmp_path / "out",
        calibration=CalibrationSettings(mm_per_pixel=mm_per_pixel, detect_marker=False),
        procedures=ProcedureOptions(),
        overwrite=True,
    )
    return planner.plan_photo(photo, "photo", mask_path).plan


def plan_with_one_class_model(tmp_path: Path, name: str, treatable: bool) -> Plan:
    """The painted patch planned by a rule model whose only class besides background is
    `name` (no procedure of the default taxonomy treats it)."""
    classes = [
        {"id": 0, "name": "background", "color": [0, 0, 0], "treatable": False},
        {"id": 1, "name": name, "color": [255, 0, 0], "treatable": treatable},
    ]
    model = PlanningModel(write_rule_model(tmp_path / f"{name}.onnx", classes=classes))
    return plan_with_model(model, tmp_path, paint(skin_photo(), PATCH, (160, 120), 50))


def codes_of(plan: Plan) -> set[str]:
    return {r.code for r in plan.review.reasons}


# ---- decisions by area, specks -----------------------------------------------------------


def test_stray_thinning_pixels_do_not_switch_the_procedure(tmp_path: Path) -> None:
    rgb = synthetic_photo(384, 512)
    mask = np.zeros((384, 512), np.uint8)
    cv2.ellipse(mask, (160, 180), (110, 80), 0, 0, 360, 1, cv2.FILLED)  # vitiligo
    mask[30:50, 350:390] = 2  # a scar of 800 px
    mask[300, 400:420] = 3  # 20 stray "thinning" pixels
    plan = plan_with_mask(tmp_path, rgb, mask)
    procedure = plan.procedure
    assert procedure.name == "vitiligo-camouflage" and procedure.chosen_by == "treatable area"
    decisions = {d.class_name: d for d in plan.decisions}
    assert decisions["vitiligo"].decision == "treated"
    assert decisions["thinning"].decision == "below minimum"
    assert decisions["thinning"].specks == 1 and decisions["thinning"].patches == 0
    assert decisions["scar"].decision == "other procedure"
    assert decisions["scar"].other_procedure == "scar-camouflage"
    assert "other-procedure" in {w.code for w in plan.warnings}
    # the speck is counted, never a patch (no outline, tone or treatment)
    thinning = next(c for c in plan.classes if c.name == "thinning")
    assert (thinning.area_px, thinning.patch_count, thinning.speck_count) == (20, 0, 1)
    assert all(p.class_name != "thinning" for p in plan.patches)
    # uncalibrated: the minimum is relative to the photo, stated in plan and report
    minimum = plan.treatable.min_patch_area_px
    assert minimum == int(np.ceil(THRESHOLDS_SHARE * 384 * 512)) and minimum > 20
    assert plan.treatable.min_patch_rule.startswith("not calibrated")
    assert procedure.min_patch_area.unit == "px" and procedure.min_patch_area.value == minimum
    assert all(p.area_px >= minimum for p in plan.patches if p.treatable)
    html = (tmp_path / "out" / "photo.html").read_text()
    assert "not calibrated: 0.02 % of the photo" in html and "4 mm²" not in html
    assert "Classes found" in html and "left to scar-camouflage" in html


THRESHOLDS_SHARE = 2e-4  # planner.SPECK_PHOTO_SHARE, restated: the test pins the documented rule


def test_a_scar_alone_is_planned_and_the_calibrated_minimum_is_in_mm2(tmp_path: Path) -> None:
    mask = np.zeros((240, 320), np.uint8)
    mask[100:140, 100:160] = 2  # 2400 px = 24 mm² at 0.1 mm/px
    mask[10:12, 10:11] = 2  # 2 px = 0.02 mm²: under scar-camouflage's 2 mm²
    plan = plan_with_mask(tmp_path, synthetic_photo(240, 320), mask, mm_per_pixel=0.1)
    assert plan.procedure.name == "scar-camouflage"
    assert plan.treatable.min_patch_area_px == 200 and plan.treatable.min_patch_rule == "2 mm²"
    assert [p.area_px for p in plan.patches] == [2400]
    scar = next(c for c in plan.classes if c.name == "scar")
    assert (scar.speck_count, scar.speck_area_px) == (1, 2)


# ---- one warning per cause -----------------------------------------------------------------


def test_one_warning_per_cause_in_json_report_cli_and_index(tmp_path: Path) -> None:
    rgb = synthetic_photo(240, 320)
    mask = np.zeros((240, 320), np.uint8)
    mask[60:180, 60:200] = 1
    write_image(tmp_path / "in" / "a.png", rgb)
    write_image(tmp_path / "in" / "b.png", rgb)
    for name in ("a", "b"):
        (tmp_path / "in" / f"{name}.mask.png").write_bytes(encode_png(mask))
    result = run_cli(
        "plan",
        str(tmp_path / "in" / "a.png"),
        str(tmp_path / "in" / "b.png"),
        "--mask",
        str(tmp_path / "in" / "a.mask.png"),
        "--mask",
        str(tmp_path / "in" / "b.mask.png"),
        "--out",
        str(tmp_path / "out"),
        "--margin-mm",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    plan = Plan.model_validate_json((tmp_path / "out" / "a.plan.json").read_text())
    codes = [w.code for w in plan.warnings]
    assert len(codes) == len(set(codes))
    assert "no-marker" in codes and "margin-ignored" in codes and "uncalibrated" not in codes
    summary = json.loads(result.stdout)["planned"][0]
    assert [w["code"] for w in summary["warnings"]] == codes
    assert "needs_review" in summary and isinstance(summary["review"], list)
    assert "no-marker" in result.stderr  # the CLI table shows the codes
    html = (tmp_path / "out" / "a.html").read_text()
    assert html.count("no ArUco marker") == 1
    assert "no-marker" in (tmp_path / "out" / "index.html").read_text()


def test_index_lists_plans_needing_review_first(tmp_path: Path, rule_model) -> None:
    good = paint(skin_photo(), PATCH, (160, 120), 50)
    unsure = paint(skin_photo(), (140, 90, 70), (160, 120), 50)  # red 140: confidence 0.55
    summaries = []
    for name, rgb in (("good", good), ("unsure", unsure)):
        plan = plan_with_model(rule_model, tmp_path / name, rgb)
        summaries.append(PlanSummary.from_plan(Path(f"{name}.png"), name, plan))
    assert [s.needs_review for s in summaries] == [False, True]
    page = render_index([(s, None) for s in summaries])
    assert page.index("unsure.png") < page.index("good.png")
    assert "1 to check first" in page and "low-confidence" in page


# ---- the review: each reason ---------------------------------------------------------------


def test_a_clear_plan_needs_no_review(tmp_path: Path, rule_model) -> None:
    plan = plan_with_model(rule_model, tmp_path, paint(skin_photo(), PATCH, (160, 120), 50))
    assert plan.review.needs_review is False, plan.review.reasons
    assert plan.review.reasons == []
    assert plan.review.measures["confidence"] > 0.9
    assert plan.procedure.pigment_target.tone is not None


def test_low_confidence(tmp_path: Path, rule_model) -> None:
    plan = plan_with_model(rule_model, tmp_path, paint(skin_photo(), (140, 90, 70), (160, 120), 50))
    assert plan.review.needs_review and "low-confidence" in codes_of(plan)
    reason = next(r for r in plan.review.reasons if r.code == "low-confidence")
    assert reason.value == pytest.approx(140 / 255, abs=0.01)
    assert reason.threshold == THRESHOLDS.min_confidence


def test_uncertain_pixels(tmp_path: Path, rule_model) -> None:
    rgb = paint(skin_photo(), PATCH, (100, 120), 40)
    rgb[:, 180:, 0] = 126  # a wide band the model is unsure is background (0.50)
    plan = plan_with_model(rule_model, tmp_path, rgb)
    assert "uncertain-pixels" in codes_of(plan) and "low-confidence" not in codes_of(plan)
    assert plan.review.measures["uncertain_share"] > THRESHOLDS.max_uncertain_share


def test_tta_disagreement(tmp_path: Path, rule_model) -> None:
    rgb = paint(skin_photo(), PATCH, (160, 120), 50)
    plan = plan_with_model(rule_model, tmp_path, rgb)
    mask = (rgb[..., 0] > 127).astype(np.uint8)
    agree = review_plan(plan, rgb, mask, None, disagreement=np.zeros_like(mask))
    assert "tta-disagreement" not in {r.code for r in agree.reasons}
    assert agree.measures["tta_disagreement"] == 0
    flips = cv2.dilate(mask, np.ones((25, 25), np.uint8)) - mask  # a ring the flip disagrees on
    review = review_plan(plan, rgb, mask, None, disagreement=flips)
    assert review.needs_review and "tta-disagreement" in {r.code for r in review.reasons}
    # the exported model gives one number per photo: the share of all pixels that change
    photo_wide = np.float32(np.count_nonzero(flips) / flips.size)
    scalar = review_plan(plan, rgb, mask, None, disagreement=photo_wide)
    assert scalar.measures["tta_disagreement"] == review.measures["tta_disagreement"]
    assert "tta-disagreement" in {r.code for r in scalar.reasons}
    few = review_plan(plan, rgb, mask, None, disagreement=np.float32(10 / flips.size))
    assert "tta-disagreement" not in {r.code for r in few.reasons}


def test_many_specks(tmp_path: Path, rule_model) -> None:
    rgb = paint(skin_photo(), PATCH, (160, 120), 40)
    for i in range(THRESHOLDS.max_specks + 3):
        rgb[10 + 8 * i, 10:12] = PATCH  # 2-pixel specks
    plan = plan_with_model(rule_model, tmp_path, rgb)
    assert "many-specks" in codes_of(plan)
    assert plan.review.measures["specks"] == THRESHOLDS.max_specks + 3
    assert len(plan.patches) == 1  # specks are not patches


def test_many_patches(tmp_path: Path, rule_model) -> None:
    rgb = skin_photo()
    for i in range(THRESHOLDS.max_patches + 2):
        paint(rgb, PATCH, (25 + 45 * (i % 7), 60 + 100 * (i // 7)), 13)
    plan = plan_with_model(rule_model, tmp_path, rgb)
    assert plan.treatable.patch_count == THRESHOLDS.max_patches + 2
    assert "many-patches" in codes_of(plan)


def test_edge_cut(tmp_path: Path, rule_model) -> None:
    plan = plan_with_model(rule_model, tmp_path, paint(skin_photo(), PATCH, (0, 120), 60))
    assert "edge-cut" in codes_of(plan)
    assert plan.review.measures["edge_cut_share"] == 1.0


def test_not_skin_and_the_pigment_target_withheld(tmp_path: Path, rule_model) -> None:
    rgb = skin_photo()
    rgb[:, 160:] = CLOTH
    paint(rgb, PATCH, (240, 120), 30)  # a "patch" on the dress
    plan = plan_with_model(rule_model, tmp_path, rgb)
    assert {"not-skin", "pigment-unreliable"} <= codes_of(plan)
    assert plan.patches[0].tone.skin_share < THRESHOLDS.min_ring_skin_share
    target = plan.procedure.pigment_target
    assert target.tone is None and target.withheld and "skin" in target.withheld
    assert "pigment-withheld" in {w.code for w in plan.warnings}
    assert "no swatch" in (tmp_path / "out" / "photo.html").read_text()


def test_pigment_target_from_skin_only(tmp_path: Path) -> None:
    """Half the ring is a dress: the skin model leaves it out, so the target is the skin's."""
    rgb = synthetic_photo(240, 320)
    rgb[:, 170:] = CLOTH
    mask = np.zeros((240, 320), np.uint8)
    cv2.circle(mask, (150, 120), 30, 1, cv2.FILLED)
    rgb[mask == 1] = (240, 225, 215)
    plan = plan_with_mask(tmp_path, rgb, mask)
    target = plan.procedure.pigment_target
    skin = fit_skin_model(rgb, not_skin=mask > 0)
    assert target.tone is not None and target.withheld is None
    assert 0.35 < target.skin_share < 0.9  # part of the ring was the dress, left out
    truth = tone.lab_of(rgb[90:150, 60:100]).reshape(-1, 3).mean(axis=0)  # skin nearby
    assert tone.delta_e76(target.tone.lab, truth) < 3.0
    assert skin.is_skin(np.array(target.tone.lab, np.float32)[None])[0]
    assert not skin.is_skin(tone.lab_of(np.array([[CLOTH]], np.uint8)))[0, 0]


FLOOR = (110, 80, 60)  # a brown wooden floor: its chroma passes the broad skin rule


def test_the_skin_model_is_fitted_around_the_patches(tmp_path: Path) -> None:
    """A foot on a wooden floor that fills most of the frame (FUSeg): fitted on the whole photo
    the model would be the floor's and call the foot's skin 'not skin'; fitted around the patch
    it is the skin's."""
    rgb = synthetic_photo(240, 320)
    rgb[:, :200] = FLOOR  # 62 % of the photo
    mask = np.zeros((240, 320), np.uint8)
    cv2.circle(mask, (262, 120), 20, 1, cv2.FILLED)
    rgb[mask == 1] = (240, 225, 215)
    floor_lab = tone.lab_of(np.array([[FLOOR]], np.uint8))[0, 0]
    whole = fit_skin_model(rgb, not_skin=mask > 0)
    assert tone.delta_e76(whole.mean, floor_lab) < 2.0  # what the whole photo gives
    near = fit_skin_model(rgb, not_skin=mask > 0, near=mask > 0)
    skin_lab = tone.lab_of(rgb[100:140, 290:310]).reshape(-1, 3).mean(axis=0)
    assert tone.delta_e76(near.mean, skin_lab) < 3.0
    plan = plan_with_mask(tmp_path, rgb, mask)
    assert plan.patches[0].tone.skin_share > 0.8
    assert "not-skin" not in codes_of(plan)
    assert plan.procedure.pigment_target.tone is not None


def test_strand_marked_skin_counts_as_skin_in_the_ring_share() -> None:
    """On textured skin the strand finder marks the darker pixels: those the skin model calls
    skin count as skin. Real strands (not skin-coloured) stay aside, as before."""
    rgb = synthetic_photo(200, 200)
    region = np.zeros((200, 200), bool)
    cv2.circle(region.view(np.uint8), (100, 100), 25, 1, cv2.FILLED)
    skin = fit_skin_model(rgb, not_skin=region)
    checker = (np.indices((200, 200)).sum(axis=0) % 2 == 0) & ~region
    textured = rgb.copy()
    textured[~checker & ~region] = (252, 250, 250)  # glare: not skin, not marked
    coverage = checker.astype(np.uint8) * 255  # the skin-coloured half, marked as "strands"

    def share(photo: np.ndarray) -> float:
        hair = tone.Hair(mask=checker, coverage=coverage, dark=True)
        x, y, w, h = cv2.boundingRect(region.view(np.uint8))
        return tone.patch_tone(
            photo, region[y : y + h, x : x + w], (x, y, w, h), region, checker,
            tone.ring_px(region.shape), hair=hair, skin=skin,
        ).skin_share  # fmt: skip

    assert share(textured) == pytest.approx(0.5, abs=0.05)  # half skin, half glare
    stranded = rgb.copy()
    stranded[checker] = (30, 20, 15)  # real dark strands on skin
    assert share(stranded) > 0.99  # strands aside, the rest is skin


def test_too_little_skin_withholds_the_swatch(tmp_path: Path) -> None:
    rgb = np.full((240, 320, 3), CLOTH, np.uint8)
    mask = np.zeros((240, 320), np.uint8)
    cv2.circle(mask, (150, 120), 30, 1, cv2.FILLED)
    plan = plan_with_mask(tmp_path, rgb, mask)
    target = plan.procedure.pigment_target
    assert target.tone is None and "too little skin" in target.withheld
    assert "pigment-unreliable" in codes_of(plan)


def test_blurry(tmp_path: Path, rule_model) -> None:
    rgb = paint(synthetic_photo(240, 320) // 2, PATCH, (160, 120), 50)
    blurred = cv2.GaussianBlur(rgb, (0, 0), 6)
    assert "blurry" not in codes_of(plan_with_model(rule_model, tmp_path / "sharp", rgb))
    plan = plan_with_model(rule_model, tmp_path / "blurred", blurred)
    assert "blurry" in codes_of(plan) and plan.review.needs_review


def test_exposure(tmp_path: Path, rule_model) -> None:
    rgb = paint(np.full((240, 320, 3), 3, np.uint8), PATCH, (160, 120), 50)
    assert "exposure" in codes_of(plan_with_model(rule_model, tmp_path, rgb))


def test_padding_bars_are_not_exposure(tmp_path: Path, rule_model) -> None:
    """A well-exposed photo zero-padded to a square (as clinical sets often are) is not badly
    exposed; a black area inside the photo is."""
    photo = paint(skin_photo(), PATCH, (160, 120), 50)  # 240 x 320
    padded = np.zeros((320, 320, 3), np.uint8)
    padded[40:280] = photo
    assert "exposure" not in codes_of(plan_with_model(rule_model, tmp_path / "bars", padded))
    shadowed = padded.copy()
    shadowed[90:230, 20:300] = 0  # as much black again, inside the photo
    assert "exposure" in codes_of(plan_with_model(rule_model, tmp_path / "inside", shadowed))


def test_low_resolution(tmp_path: Path, rule_model) -> None:
    plan = plan_with_model(rule_model, tmp_path, paint(skin_photo(90, 120), PATCH, (60, 45), 20))
    assert "low-resolution" in codes_of(plan)


def test_nothing_found_by_the_model_needs_review(tmp_path: Path, rule_model) -> None:
    plan = plan_with_model(rule_model, tmp_path, skin_photo())
    assert not [p for p in plan.patches if p.treatable]
    assert plan.review.needs_review and "nothing-found" in codes_of(plan)
    # a mask a person drew is their finding: nothing to confirm
    drawn = plan_with_mask(tmp_path, skin_photo(), np.zeros((240, 320), np.uint8))
    assert "nothing-found" not in codes_of(drawn)


def test_a_model_with_nothing_treatable_is_not_flagged_for_finding_nothing(tmp_path: Path) -> None:
    plan = plan_with_one_class_model(tmp_path, "hair", treatable=False)
    assert plan.decisions[0].decision == "not treatable"
    assert "nothing-found" not in codes_of(plan)


def test_uncalibrated_is_a_note_not_a_flag(tmp_path: Path, rule_model) -> None:
    rgb = paint(skin_photo(), PATCH, (160, 120), 50)
    plan = plan_with_model(rule_model, tmp_path, rgb, mm_per_pixel=None)
    reason = next(r for r in plan.review.reasons if r.code == "uncalibrated")
    assert reason.sets_review is False and plan.review.needs_review is False


# ---- the model's learned post-processing ---------------------------------------------------


def test_postprocess_metadata_is_read_defensively() -> None:
    taxonomy = DEFAULT_TAXONOMY
    post, warning = read_postprocess(
        {"dermaseg.postprocess": json.dumps({"min_component_fraction": 0.01, "fill_holes": True})},
        taxonomy,
    )
    assert warning is None and post.fill_holes and post.min_fraction[1] == 0.01
    mask = np.zeros((100, 100), np.uint8)
    mask[20:60, 20:60] = 1
    mask[35:40, 35:40] = 0  # a hole
    mask[90, 90] = 2  # 1 px < 1 % of the photo
    out = apply_postprocess(mask, post)
    assert out[37, 37] == 1 and out[90, 90] == 0 and mask[90, 90] == 2
    per_class, _ = read_postprocess(
        {"dermaseg.postprocess": '{"min_component_fraction": {"scar": 0.5}}'}, taxonomy
    )
    assert per_class.min_fraction == {2: 0.5} and not per_class.fill_holes
    largest, _ = read_postprocess({"dermaseg.postprocess": '{"largest_only": ["scar"]}'}, taxonomy)
    two = np.zeros((50, 50), np.uint8)
    two[5:25, 5:25], two[40:45, 40:45], two[0, 49] = 2, 2, 1
    kept = apply_postprocess(two, largest)
    assert largest.largest_only == {2} and kept[10, 10] == 2 and kept[42, 42] == 0
    assert kept[0, 49] == 1  # other classes untouched
    bad_values = ("[1]", "{", '{"min_component_fraction": 2}', '{"fill_holes": "yes"}')
    for bad in (*bad_values, '{"largest_only": ["nope"]}', '{"largest_only": "scar"}'):
        ignored, warning = read_postprocess({"dermaseg.postprocess": bad}, taxonomy)
        assert ignored.empty and warning.code == "postprocess-invalid"
    assert read_postprocess({}, taxonomy) == (read_postprocess({}, taxonomy)[0], None)


def test_postprocess_runs_before_planning(tmp_path: Path) -> None:
    meta = {"dermaseg.postprocess": json.dumps({"min_component_fraction": 0.05})}
    model = PlanningModel(write_rule_model(tmp_path / "post.onnx", meta))
    rgb = paint(skin_photo(), PATCH, (160, 120), 50)
    rgb[10:40, 10:40] = PATCH  # 900 px: above the 4 mm² minimum, under 5 % of the photo
    plan = plan_with_model(model, tmp_path, rgb)
    assert len(plan.patches) == 1 and plan.classes[1].speck_count == 0
    broken = PlanningModel(write_rule_model(tmp_path / "bad.onnx", {"dermaseg.postprocess": "x"}))
    plan = plan_with_model(broken, tmp_path / "b", rgb)
    assert len(plan.patches) == 2 and "postprocess-invalid" in {w.code for w in plan.warnings}


def test_plan_photo_makes_the_same_plan_without_writing_files(tmp_path: Path, rule_model) -> None:
    from dermaseg.infer import plan_photo

    rgb = paint(skin_photo(), PATCH, (160, 120), 50)
    path = write_image(tmp_path / "in" / "photo.png", rgb)
    plan = plan_photo(path, model=rule_model, mm_per_pixel=0.1)
    written = plan_with_model(rule_model, tmp_path, rgb)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["photo.png"]
    assert plan.model_dump(exclude={"created"}) == written.model_dump(exclude={"created"})
    assert plan.procedure.name == "vitiligo-camouflage" and plan.review.needs_review is False
    with pytest.raises(DermasegError):
        plan_photo(path)


def test_schema_version_2_describes_warnings_review_and_decisions() -> None:
    from dermaseg.infer.schema import PLAN_SCHEMA_VERSION, plan_json_schema

    schema = plan_json_schema()
    assert PLAN_SCHEMA_VERSION == "2" and "/plan/2/" in schema["$id"]
    assert {"PlanWarning", "Review", "ReviewReason", "ClassDecision"} <= set(schema["$defs"])
    assert {"review", "decisions", "warnings"} <= set(schema["properties"])
    result = run_cli("plan", "--schema", "unused.jpg")
    assert result.returncode == 0 and json.loads(result.stdout) == schema


def test_a_model_no_procedure_treats_is_planned_on_its_own_classes(tmp_path: Path) -> None:
    plan = plan_with_one_class_model(tmp_path, "lesion", treatable=True)
    assert plan.procedure is None and "no-procedure" in {w.code for w in plan.warnings}
    assert [p.treatable for p in plan.patches] == [True]
    assert plan.decisions[0].decision == "treated" and plan.review.needs_review is False


def test_every_reason_code_has_a_test() -> None:
    """Each code in REASON_CODES (the only codes review_plan emits) is named in a test here."""
    tree = ast.parse(Path(__file__).read_text())
    named = {
        node.value
        for function in tree.body
        if isinstance(function, ast.FunctionDef)
        and function.name.startswith("test_")
        and function.name != "test_every_reason_code_has_a_test"
        for node in ast.walk(function)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert set(REASON_CODES) <= named, set(REASON_CODES) - named
