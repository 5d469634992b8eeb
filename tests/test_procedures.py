"""Procedure-aware plans: each profile on synthetic photos with known truth, clinic overrides,
stability against a previous plan, and one-line errors (real CLI subprocesses)."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.infer import tone
from dermaseg.infer.hair_colour import measure_hair_colour
from dermaseg.infer.procedures import load_procedure
from dermaseg.infer.schema import Plan
from tests.conftest import run_cli, write_image
from tests.plan_factory import synthetic_mask, synthetic_photo
from tests.test_plan import plan_mask, write_synth

SKIN_VITILIGO_SCAR = 1  # write_synth seeds: skin with vitiligo and a scar
SKIN_SCAR = 4  # skin with scars only
SCALP_DARK_HAIR = (3, 11)  # scalp, thinning hair, dark strands


def planned(out: Path, seed: int | str) -> Plan:
    stem = seed if isinstance(seed, str) else f"visit{seed}"
    return Plan.model_validate_json((out / f"{stem}.plan.json").read_text())


def run_plan(tmp_path: Path, seed: int, *extra: str, out: str = "out") -> Plan:
    write_synth(tmp_path / "in", seed)
    result = plan_mask(tmp_path / "in", seed, tmp_path / out, *extra)
    assert result.returncode == 0, result.stderr
    return planned(tmp_path / out, seed)


def expected_sessions(name: str, area_cm2: float, overrides: dict | None = None) -> tuple:
    model = load_procedure(name).sessions.model_dump() | (overrides or {})
    extra = max(0, math.ceil(area_cm2 / model["area_per_session_cm2"]) - 1)
    return model["min"] + extra, model["max"] + extra


def test_vitiligo_camouflage_is_chosen_and_matches_the_surrounding_skin(tmp_path: Path) -> None:
    seed = SKIN_VITILIGO_SCAR
    truth = write_synth(tmp_path / "in", seed)
    plan = run_plan(tmp_path, seed)
    procedure = plan.procedure
    assert procedure is not None and procedure.name == "vitiligo-camouflage"
    assert procedure.chosen_by == "treatable area"
    treated = [p for p in plan.patches if p.id in procedure.treated_patch_ids]
    assert treated and all(p.class_name == "vitiligo" for p in treated)
    assert all(not p.treatable for p in plan.patches if p.class_name == "scar")
    assert [c.treatable for c in plan.classes] == [False, True, False, False]
    assert procedure.margin.value == 1.0 and procedure.margin.source == "default"
    assert procedure.min_patch_area.source == "default"
    area = procedure.treatable_area
    assert area.unit == "cm2" and area.source == "measured"
    assert area.value == pytest.approx(plan.treatable.area_cm2, abs=1e-4)
    # the target is the pixel-weighted true surround colour of the treated patches
    by_box = {tuple(p["bbox"]): p for p in truth["patches"]}
    surrounds = [by_box[tuple(p.bbox)]["surround_lab"] for p in treated]
    weights = [p.tone.surround.pixels for p in treated]
    true_target = np.average(np.array(surrounds), axis=0, weights=weights)
    target = procedure.pigment_target
    assert target.kind == "skin" and target.source == "measured"
    assert tone.delta_e76(target.tone.lab, true_target) < 2.0
    assert target.tone.hex.startswith("#") and target.tone.ita_category
    sessions = procedure.sessions
    assert (sessions.low, sessions.high) == expected_sessions("vitiligo-camouflage", area.value)
    assert sessions.source == "default" and "ceil(" in sessions.rule
    assert (procedure.interval_weeks.low, procedure.interval_weeks.high) == (4, 6)
    assert procedure.touch_up_months.unit == "months" and procedure.stability is None
    html = (tmp_path / "out" / f"visit{seed}.html").read_text()
    assert "<h2>Procedure</h2>" in html and "Vitiligo camouflage" in html
    assert target.tone.hex in html and "(measured)" in html and "(default)" in html
    assert html.index("<h2>Procedure</h2>") < html.index("<h2>Calibration</h2>")


def test_scar_camouflage_is_chosen_for_scars(tmp_path: Path) -> None:
    plan = run_plan(tmp_path, SKIN_SCAR)
    procedure = plan.procedure
    assert procedure.name == "scar-camouflage" and procedure.classes == ["scar"]
    assert procedure.treated_patch_ids
    assert procedure.pigment_target.kind == "skin" and procedure.pigment_target.tone is not None
    assert procedure.margin.value == 1.5
    area = procedure.treatable_area.value
    sessions = procedure.sessions
    assert (sessions.low, sessions.high) == expected_sessions("scar-camouflage", area)


@pytest.mark.parametrize("seed", SCALP_DARK_HAIR)
def test_smp_thinning_matches_the_hair_colour(tmp_path: Path, seed: int) -> None:
    truth = write_synth(tmp_path / "in", seed)
    assert truth["kind"] == "scalp" and truth["hair_lab"][0] < 35
    plan = run_plan(tmp_path, seed, "--procedure", "smp-thinning")
    procedure = plan.procedure
    assert procedure.name == "smp-thinning" and procedure.chosen_by == "option"
    target = procedure.pigment_target
    assert target.kind == "hair" and target.source == "measured"
    assert tone.delta_e76(target.tone.lab, truth["hair_lab"]) < 5.0
    assert target.spread_delta_e76.unit == "ΔE76" and target.spread_delta_e76.value > 0
    colour_warnings = [w for w in procedure.warnings if w.code != "smp-dots"]
    assert not any("hair" in w.code for w in colour_warnings)
    assert procedure.smp_density is not None  # long hair: counted, or a warning says why not
    if procedure.smp_density.dot_density is None:
        assert any(
            w.code == "smp-dots" and "hair density not measured" in w.text
            for w in procedure.warnings
        )
    area = procedure.treatable_area.value
    sessions = procedure.sessions
    assert (sessions.low, sessions.high) == expected_sessions("smp-thinning", area)
    html = (tmp_path / "out" / f"visit{seed}.html").read_text()
    assert target.tone.hex in html and "hair strands" in html


def test_hair_colour_on_dark_haired_scalps() -> None:
    """The measurement itself, on the first dark-haired synthetic scalps (JPEG q 95)."""
    errors = []
    seed = 0
    while len(errors) < 12:
        seed += 1
        photo = generate_photo(seed, 320, with_marker=False, kind="scalp", photo_id="x")
        region = photo.mask == 3
        if photo.entry["hair_lab"][0] > 32 or not region.any():
            continue
        buffer = io.BytesIO()
        Image.fromarray(photo.rgb).save(buffer, "JPEG", quality=95)
        rgb = np.asarray(Image.open(buffer).convert("RGB"))
        dark = tone.hair_is_dark(rgb, bare_hint=region)
        colour, _ = measure_hair_colour(rgb, region, np.zeros(region.shape, bool), dark)
        errors.append(tone.delta_e76(colour.tone.lab, photo.entry["hair_lab"]))
    assert np.median(errors) < 3.5, errors
    assert sum(e < 5.0 for e in errors) >= 10, errors


def test_smp_scarring_alopecia_treats_scars_and_thinning(tmp_path: Path) -> None:
    seed = SCALP_DARK_HAIR[0]
    truth = write_synth(tmp_path / "in", seed)
    plan = run_plan(tmp_path, seed, "--procedure", "smp-scarring-alopecia")
    procedure = plan.procedure
    assert procedure.classes == ["scar", "thinning"] and procedure.margin.value == 3.0
    assert tone.delta_e76(procedure.pigment_target.tone.lab, truth["hair_lab"]) < 5.0
    sessions = procedure.sessions
    area = procedure.treatable_area.value
    assert (sessions.low, sessions.high) == expected_sessions("smp-scarring-alopecia", area)
    assert sessions.low >= 3


def test_too_few_hair_pixels_is_a_warning(tmp_path: Path) -> None:
    """Bare skin with a thinning region drawn on it: no strands to take the colour from."""
    write_image(tmp_path / "bare.png", synthetic_photo())
    mask = np.where(synthetic_mask() == 3, 3, 0).astype(np.uint8)
    (tmp_path / "bare.mask.png").write_bytes(encode_png(mask))
    result = run_cli(
        "plan",
        str(tmp_path / "bare.png"),
        "--mask",
        str(tmp_path / "bare.mask.png"),
        "--mm-per-pixel",
        "0.5",
        "--out",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    plan = planned(tmp_path / "out", "bare")
    procedure = plan.procedure
    assert procedure.name == "smp-thinning" and procedure.treated_patch_ids
    assert any(w.code == "few-hair-pixels" for w in procedure.warnings), procedure.warnings
    assert {w.code for w in procedure.warnings} <= {w.code for w in plan.warnings}
    assert "hair pixels found" in (tmp_path / "out" / "bare.html").read_text()


def test_clinic_config_and_options_override_the_profile(tmp_path: Path) -> None:
    config = tmp_path / "clinic.yaml"
    config.write_text(
        "procedures:\n  vitiligo-camouflage:\n"
        "    sessions: {min: 1, max: 2, area_per_session_cm2: 1.5}\n"
        "    min_patch_area_mm2: 0\n"
    )
    plan = run_plan(
        tmp_path, SKIN_VITILIGO_SCAR, "--clinic-config", str(config), "--margin-mm", "2.5"
    )
    procedure = plan.procedure
    assert procedure.margin.value == 2.5 and procedure.margin.source == "clinic setting"
    assert plan.treatable.margin_mm == 2.5
    assert (
        procedure.min_patch_area.value == 0 and procedure.min_patch_area.source == "clinic setting"
    )
    area = procedure.treatable_area.value
    overrides = {"min": 1, "max": 2, "area_per_session_cm2": 1.5}
    sessions = procedure.sessions
    assert (sessions.low, sessions.high) == expected_sessions(
        "vitiligo-camouflage", area, overrides
    )
    assert sessions.high > 2 and sessions.source == "clinic setting"
    assert "1.5 cm² per session" in sessions.rule
    assert procedure.interval_weeks.source == "default"


def test_previous_plan_gives_stability(tmp_path: Path) -> None:
    seed = SKIN_VITILIGO_SCAR
    first = run_plan(tmp_path, seed, out="v1")
    mask_path = tmp_path / "in" / f"visit{seed}.mask.png"
    mask = np.asarray(Image.open(mask_path))
    grown = mask.copy()
    grown[:60, :60][mask[:60, :60] == 0] = 1  # new vitiligo at the second visit
    mask_path.write_bytes(encode_png(grown))
    previous = tmp_path / "v1" / f"visit{seed}.plan.json"
    result = plan_mask(tmp_path / "in", seed, tmp_path / "v2", "--previous", str(previous))
    assert result.returncode == 0, result.stderr
    stability = planned(tmp_path / "v2", seed).procedure.stability
    assert stability is not None and stability.unit == "mm2" and not stability.stable
    [vitiligo] = stability.classes
    before = next(c for c in first.classes if c.name == "vitiligo").area_mm2
    assert vitiligo.class_name == "vitiligo" and vitiligo.before == pytest.approx(before)
    assert vitiligo.change_percent > 10
    assert (
        stability.threshold_percent.value == 10 and stability.threshold_percent.source == "default"
    )
    assert any(w.code == "unstable" for w in planned(tmp_path / "v2", seed).warnings)
    html = (tmp_path / "v2" / f"visit{seed}.html").read_text()
    assert "NOT stable" in html
    same = plan_mask(tmp_path / "in", seed, tmp_path / "v3", "--previous", str(previous))
    assert same.returncode == 0
    # against itself the second visit is stable
    again = plan_mask(
        tmp_path / "in",
        seed,
        tmp_path / "v4",
        "--previous",
        str(tmp_path / "v3" / f"visit{seed}.plan.json"),
    )
    assert again.returncode == 0 and planned(tmp_path / "v4", seed).procedure.stability.stable


@pytest.mark.parametrize(
    ("args", "config", "message"),
    [
        (["--procedure", "smp"], None, "smp: unknown procedure; choose from scar-camouflage"),
        ([], "procedures:\n  smp-thinning:\n    margn_mm: 3\n", "procedures.smp-thinning.margn_mm"),
        ([], "procedures:\n  smp-thining: {}\n", "procedures.smp-thining: unknown procedure"),
        ([], "procedures: [1, 2\n", "invalid YAML"),
        ([], "procedures:\n  scar-camouflage:\n    sessions: {min: 5, max: 3}\n", "above"),
        (["--previous", "missing.plan.json"], None, "missing.plan.json"),
    ],
)
def test_bad_procedure_or_clinic_config_is_one_line(
    tmp_path: Path, args: list[str], config: str | None, message: str
) -> None:
    write_synth(tmp_path / "in", SKIN_SCAR, size=128)
    if config is not None:
        (tmp_path / "clinic.yaml").write_text(config)
        args = [*args, "--clinic-config", str(tmp_path / "clinic.yaml")]
    result = plan_mask(tmp_path / "in", SKIN_SCAR, tmp_path / "out", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "out").exists()


def test_schema_has_the_procedure_section() -> None:
    result = run_cli("plan", "--schema", "unused.jpg")
    schema = json.loads(result.stdout)
    assert "procedure" in schema["properties"] and "ProcedurePlan" in schema["$defs"]
