"""`dermaseg plan` and `dermaseg compare`: real photos, real masks, real CLI subprocesses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.schema import Plan
from dermaseg.infer.tone import delta_e76
from tests.conftest import run_cli

PRIVATE_TEXT = "Patient-Jane-Doe-Secret"
OUTPUT_SUFFIXES = (
    ".plan.json",
    ".geojson",
    ".coco.json",
    ".mask.png",
    ".overlay.png",
    ".html",
    ".photo.jpg",
    ".thumb.jpg",
)


def write_synth(folder: Path, seed: int, size: int = 384, marker: bool = True) -> dict:
    """A synthetic photo (JPEG, q 95) and its true mask (PNG); returns the manifest entry."""
    photo = generate_photo(seed, size, with_marker=marker, photo_id=f"visit{seed}")
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo.rgb).save(folder / f"visit{seed}.jpg", quality=95)
    (folder / f"visit{seed}.mask.png").write_bytes(
        encode_png(photo.mask, palette=DEFAULT_TAXONOMY.palette)
    )
    return photo.entry


def plan_mask(folder: Path, seed: int, out: Path, *extra: str):
    return run_cli(
        "plan",
        str(folder / f"visit{seed}.jpg"),
        "--mask",
        str(folder / f"visit{seed}.mask.png"),
        "--out",
        str(out),
        *extra,
    )


@pytest.mark.parametrize("seed", [11, 13, 14])  # 12: grey hair, see tone.py notes
def test_plan_from_true_mask_matches_the_generator(tmp_path: Path, seed: int) -> None:
    truth = write_synth(tmp_path / "in", seed)
    result = plan_mask(tmp_path / "in", seed, tmp_path / "out")
    assert result.returncode == 0, result.stderr
    plan = Plan.model_validate_json((tmp_path / "out" / f"visit{seed}.plan.json").read_text())
    assert plan.calibration.method == "marker"
    assert plan.calibration.mm_per_pixel == pytest.approx(truth["mm_per_pixel"], rel=0.01)
    true_total = sum(v for k, v in truth["class_area_mm2"].items() if k != "background")
    planned_total = sum(c.area_mm2 for c in plan.classes if c.class_id > 0)
    assert planned_total == pytest.approx(true_total, rel=0.01)
    for c in plan.classes:  # pixel counts come straight from the mask
        assert c.area_px == truth["class_area_px"][c.name]
    by_box = {tuple(p["bbox"]): p for p in truth["patches"]}
    assert len(plan.patches) == len(truth["patches"])
    for patch in plan.patches:
        true_patch = by_box[tuple(patch.bbox)]
        assert patch.area_px == true_patch["area_px"]
        assert delta_e76(patch.tone.patch.lab, true_patch["lab"]) < 2.0
        if true_patch["surround_lab"] is not None and patch.tone.surround is not None:
            assert delta_e76(patch.tone.surround.lab, true_patch["surround_lab"]) < 2.0
    assert sum(p.area_px for p in plan.patches if p.treatable) == plan.treatable.patch_area_px


def test_outputs_are_complete_and_carry_no_exif(tmp_path: Path) -> None:
    write_synth(tmp_path / "in", 21)
    photo = tmp_path / "in" / "visit21.jpg"
    image = Image.open(photo)
    exif = Image.Exif()
    exif[0x010E] = PRIVATE_TEXT  # ImageDescription
    exif[0x010F] = "CameraMakerX"  # Make
    exif[0x0112] = 1
    gps = {1: "N", 2: (51.0, 30.0, 12.5), 3: "W", 4: (0.0, 7.0, 39.0)}
    exif[0x8825] = gps
    image.save(photo, quality=95, exif=exif.tobytes())
    result = plan_mask(tmp_path / "in", 21, tmp_path / "out", "--margin-mm", "2")
    assert result.returncode == 0, result.stderr
    produced = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert produced == sorted(f"visit21{s}" for s in OUTPUT_SUFFIXES)
    for path in (tmp_path / "out").iterdir():
        data = path.read_bytes()
        assert PRIVATE_TEXT.encode() not in data and b"CameraMakerX" not in data, path.name
        assert b"Exif\x00\x00" not in data, path.name
    plan = json.loads((tmp_path / "out" / "visit21.plan.json").read_text())
    assert plan["treatable"]["margin_mm"] == 2.0
    assert plan["treatable"]["area_px"] > plan["treatable"]["patch_area_px"]
    html = (tmp_path / "out" / "visit21.html").read_text()
    assert "visit21.jpg" in html and "data:image/jpeg;base64," in html


def test_existing_outputs_are_not_overwritten(tmp_path: Path) -> None:
    write_synth(tmp_path / "in", 22, marker=False)
    assert plan_mask(tmp_path / "in", 22, tmp_path / "out").returncode == 0
    plan_file = tmp_path / "out" / "visit22.plan.json"
    before = plan_file.read_bytes()
    again = plan_mask(tmp_path / "in", 22, tmp_path / "out")
    assert again.returncode == 0, again.stderr  # skipped and said so, not a failure
    assert "0 planned, 0 failed, 1 skipped" in again.stdout and "Traceback" not in again.stderr
    assert plan_file.read_bytes() == before
    assert plan_mask(tmp_path / "in", 22, tmp_path / "out", "--overwrite").returncode == 0
    plan = Plan.model_validate_json(plan_file.read_text())
    assert plan.calibration.method == "none"
    assert [w.code for w in plan.calibration.warnings] == ["no-marker"]
    assert plan.classes[1].area_mm2 is None


def test_required_marker_and_manual_scale(tmp_path: Path) -> None:
    write_synth(tmp_path / "in", 23, marker=False)
    missing = plan_mask(tmp_path / "in", 23, tmp_path / "a", "--require-marker")
    assert missing.returncode == 1 and "no DICT_4X4_50 marker found" in missing.stderr
    manual = plan_mask(tmp_path / "in", 23, tmp_path / "b", "--mm-per-pixel", "0.1")
    assert manual.returncode == 0
    plan = Plan.model_validate_json((tmp_path / "b" / "visit23.plan.json").read_text())
    assert plan.calibration.method == "manual"
    vitiligo = plan.classes[1]
    assert vitiligo.area_mm2 == pytest.approx(vitiligo.area_px * 0.01)


def test_mask_of_the_wrong_size_or_values_is_one_line(tmp_path: Path) -> None:
    write_synth(tmp_path / "in", 24, size=256)
    bad = tmp_path / "in" / "visit24.mask.png"
    bad.write_bytes(encode_png(np.zeros((10, 12), np.uint8)))
    result = plan_mask(tmp_path / "in", 24, tmp_path / "out")
    assert result.returncode == 1
    assert "visit24.mask.png: mask is 12x10" in result.stderr and "Traceback" not in result.stderr
    bad.write_bytes(encode_png(np.full((256, 256), 9, np.uint8)))
    result = plan_mask(tmp_path / "in", 24, tmp_path / "out")
    assert "mask values 9 are not class ids" in result.stderr
    assert not (tmp_path / "out" / "visit24.plan.json").exists()


def test_compare_two_visits(tmp_path: Path) -> None:
    write_synth(tmp_path / "in", 25, size=256)
    photo = tmp_path / "in" / "visit25.jpg"
    mask_path = tmp_path / "in" / "visit25.mask.png"
    assert plan_mask(tmp_path / "in", 25, tmp_path / "v1").returncode == 0
    mask = np.asarray(Image.open(mask_path))
    grown = mask.copy()
    grown[:40, :40] = 1  # more vitiligo at the second visit
    mask_path.write_bytes(encode_png(grown))
    assert plan_mask(tmp_path / "in", 25, tmp_path / "v2").returncode == 0
    result = run_cli(
        "compare",
        str(tmp_path / "v1" / "visit25.plan.json"),
        str(tmp_path / "v2" / "visit25.plan.json"),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    vitiligo = next(row for row in report["classes"] if row["class"] == "vitiligo")
    added = int(np.count_nonzero((grown == 1) & (mask != 1)))
    plan = Plan.model_validate_json((tmp_path / "v1" / "visit25.plan.json").read_text())
    unit = report["unit"]
    scale = 1.0 if unit == "px" else plan.calibration.mm_per_pixel**2
    assert vitiligo["area"]["change"] == pytest.approx(added * scale, rel=1e-6)
    uncalibrated = run_cli(
        "plan", str(photo), "--mask", str(mask_path), "--no-marker", "-o", str(tmp_path / "v3")
    )
    assert uncalibrated.returncode == 0
    result = run_cli(
        "compare",
        str(tmp_path / "v1" / "visit25.plan.json"),
        str(tmp_path / "v3" / "visit25.plan.json"),
        "--json",
    )
    report = json.loads(result.stdout)
    assert report["unit"] == "px" and "not calibrated" in report["warnings"][0]
    broken = tmp_path / "broken.json"
    broken.write_text('{"schema_version": "1"}')
    result = run_cli("compare", str(broken), str(tmp_path / "v1" / "visit25.plan.json"))
    assert result.returncode == 2 and "broken.json: not a dermaseg plan" in result.stderr


def test_schema_option_prints_the_json_schema() -> None:
    result = run_cli("plan", "--schema", "unused.jpg")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Plan" and "patches" in schema["properties"]


def test_planner_times_every_stage(tmp_path: Path) -> None:
    """`PlannedPhoto.seconds` names each stage once, in order (the perf benchmark reads it)."""
    from dermaseg.infer.batch import BatchPlanner, CalibrationSettings

    write_synth(tmp_path / "in", 11)
    planner = BatchPlanner(tmp_path / "out", calibration=CalibrationSettings(detect_marker=False))
    planned = planner.plan_photo(
        tmp_path / "in" / "visit11.jpg", "visit11", tmp_path / "in" / "visit11.mask.png"
    )
    outputs = ["outputs.overlay", "outputs.mask", "outputs.coco", "outputs.report"]
    stages = ["decode", "calibrate", "inference", "geometry", "tone", "procedure", *outputs]
    stages.append("outputs.write")
    assert list(planned.seconds) == stages
    assert all(seconds >= 0 for seconds in planned.seconds.values())
    assert planned.plan.skin_tone is not None and all(p.tone for p in planned.plan.patches)
    # the index reuses the thumbnail the plan wrote; without a usable one it is made again
    from dermaseg.infer.outputs import index_thumbnail

    thumb = planned.outputs["thumb"]
    assert index_thumbnail(tmp_path / "out", "visit11") == thumb.read_bytes()
    with Image.open(thumb) as image:
        assert image.format == "JPEG" and max(image.size) == 160
    for broken in (b"not a jpeg", None):
        thumb.unlink()
        if broken is not None:
            thumb.write_bytes(broken)
        made = index_thumbnail(tmp_path / "out", "visit11")
        assert made is not None and made[:3] == b"\xff\xd8\xff"
