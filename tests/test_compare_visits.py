"""`dermaseg compare` with photos: alignment, change map and refusals, on synthetic visit pairs
with a known change and a known camera move (true masks planned with `--mask`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth_visits import CameraMove, VisitPair, other_scene, visit_pair
from dermaseg.infer.align import AlignmentError, align, local_zoom
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
from dermaseg.infer.calibration import detect_marker, marker_polygon_mask
from dermaseg.infer.compare import compare_visits, find_visit, plan_warnings, read_plan
from dermaseg.infer.procedure_plan import procedure_options
from tests.conftest import run_cli

MOVES = {
    "rotation": CameraMove(rotation_deg=18.0, scale=1.0, shift=(0.02, -0.02)),
    "zoom": CameraMove(rotation_deg=-6.0, scale=1.25, shift=(-0.03, 0.02)),
    "perspective": CameraMove(rotation_deg=8.0, scale=0.9, tilt=(0.12, -0.08)),
}


def plan_visit(
    folder: Path,
    name: str,
    rgb: np.ndarray,
    mask: np.ndarray,
    *extra: str,
    cli: bool = True,
    procedure: str | None = None,
    **calibration,
) -> Path:
    """Photo (JPEG q 92) into `folder`, true mask elsewhere, plan from the mask into `folder`:
    with the CLI (`extra` options), or in this process (`calibration`: CalibrationSettings)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / f"{name}.jpg", quality=92)
    truth = folder.parent / "truth" / f"{name}.png"
    truth.parent.mkdir(exist_ok=True)
    truth.write_bytes(encode_png(mask))
    if cli:
        result = run_cli(
            "plan", str(folder / f"{name}.jpg"), "--mask", str(truth), "-o", str(folder), *extra
        )
        assert result.returncode == 0, result.stderr
    else:
        procedures = procedure_options(procedure, None, None, None, None)
        planner = BatchPlanner(
            folder, calibration=CalibrationSettings(**calibration), procedures=procedures
        )
        planner.plan_photo(folder / f"{name}.jpg", name, truth)
    return folder / f"{name}.plan.json"


def plan_pair(tmp_path: Path, pair: VisitPair, cli: bool = True):
    truth = pair.truth
    zoom = local_zoom(np.array(truth["homography"]), (384 - 1) / 2, (320 - 1) / 2)
    scale_a = truth["mm_per_pixel"]
    visits = tmp_path / "visits"
    scales = {"a": scale_a, "b": scale_a / zoom}
    if cli:
        a = plan_visit(visits, "a", pair.rgb_a, pair.mask_a, "--mm-per-pixel", str(scales["a"]))
        b = plan_visit(visits, "b", pair.rgb_b, pair.mask_b, "--mm-per-pixel", str(scales["b"]))
    else:
        a = plan_visit(visits, "a", pair.rgb_a, pair.mask_a, cli=False, mm_per_pixel=scales["a"])
        b = plan_visit(visits, "b", pair.rgb_b, pair.mask_b, cli=False, mm_per_pixel=scales["b"])
    return a, b


def compare(a: Path, b: Path, cli: bool) -> dict:
    if not cli:
        return compare_visits(find_visit(a, None, None, []), find_visit(b, None, None, []))[0]
    result = run_cli("compare", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("move", list(MOVES))
def test_change_map_areas_and_patches_match_the_truth(tmp_path: Path, move: str) -> None:
    pair = visit_pair(3, move=MOVES[move])
    cli = move == "rotation"  # the other moves run in this process (faster)
    a, b = plan_pair(tmp_path, pair, cli=cli)
    report = compare(a, b, cli)
    assert report["alignment"]["method"] == "features"
    truth = pair.truth
    vitiligo = next(row for row in report["change"]["classes"] if row["class"] == "vitiligo")
    scale = truth["mm_per_pixel"]
    for category, true_px in truth["areas_px"].items():
        measured = vitiligo[f"{category}_px"]
        assert abs(measured - true_px) <= 0.05 * true_px, (category, measured, true_px)
        assert vitiligo[f"{category}_mm2"] == pytest.approx(measured * scale**2, rel=1e-3)
    patches = {p["id"]: p for p in report["change"]["patches"]}
    assert set(patches) == set(truth["patches"])
    for number, expected in truth["patches"].items():
        patch = patches[number]
        assert patch["status"] == expected["change"], (number, patch)
        assert (patch["matched_ids_b"] == []) == (expected["change"] == "cleared")
        assert abs(patch["after_px"] - expected["after_px"]) <= 0.05 * expected["before_px"]
    (new,) = report["change"]["new_patches"]
    assert abs(new["after_px"] - truth["areas_px"]["new"]) <= 0.05 * truth["areas_px"]["new"]
    assert not any("calibrations differ" in w for w in report["warnings"])
    if not cli:
        return
    outputs = report["outputs"]
    assert Image.open(outputs["overlay"]).size[0] > 3 * 384
    html = Path(outputs["report"]).read_text()
    assert "Change since the previous visit" in html and "shrunk (repigmented)" in html
    assert json.loads(Path(outputs["json"]).read_text())["change"] == report["change"]


def test_marker_guides_alignment_and_mismatched_plans_are_flagged(tmp_path: Path) -> None:
    pair = visit_pair(5, move=CameraMove(rotation_deg=10.0, scale=1.1), with_marker=True)
    visits = tmp_path / "visits"
    a = plan_visit(visits, "a", pair.rgb_a, pair.mask_a, cli=False, procedure="vitiligo-camouflage")
    b = plan_visit(
        visits, "b", pair.rgb_b, pair.mask_b, cli=False, procedure="scar-camouflage", marker_mm=25
    )
    result = run_cli("compare", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["alignment"]["method"] == "marker+features"
    warnings = " | ".join(report["warnings"])
    assert "different procedures (vitiligo-camouflage vs scar-camouflage)" in warnings
    assert "calibrations differ by +25 %" in warnings  # a 25 mm marker was typed for a 20 mm one
    again = run_cli("compare", str(a), str(b))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_photos_of_different_scenes_are_refused(tmp_path: Path) -> None:
    pair = visit_pair(7)
    visits = tmp_path / "visits"
    a = plan_visit(visits, "a", pair.rgb_a, pair.mask_a, cli=False)
    b = plan_visit(visits, "b", other_scene(70), pair.mask_a, cli=False)
    result = run_cli("compare", str(a), str(b))
    assert result.returncode == 2
    assert "the photos cannot be aligned" in result.stderr and "different sites" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(visits.glob("*.compare.*"))


def test_without_photos_the_totals_are_compared_with_a_warning(tmp_path: Path) -> None:
    pair = visit_pair(8)
    a, b = plan_pair(tmp_path, pair, cli=False)
    (tmp_path / "visits" / "b.jpg").unlink()
    result = run_cli("compare", str(a), str(b), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["change"] is None
    assert any("totals only" in w and "photo of b.plan.json" in w for w in report["warnings"])
    vitiligo = next(row for row in report["classes"] if row["class"] == "vitiligo")
    assert vitiligo["area"]["before"] > 0
    named = run_cli("compare", str(a), str(b), "--photo-a", str(tmp_path / "visits" / "a.jpg"))
    assert named.returncode == 2 and "missing the photo of b.plan.json" in named.stderr
    wrong = run_cli("compare", str(a), str(b), "--photo-b", str(tmp_path / "visits" / "a.jpg"))
    assert wrong.returncode == 2 and "not the photo b.plan.json was made from" in wrong.stderr


def test_a_shared_marker_does_not_make_different_scenes_comparable() -> None:
    pair = visit_pair(9, with_marker=True)
    found = detect_marker(pair.rgb_a)
    assert found.marker is not None
    sticker = marker_polygon_mask(found, pair.mask_a.shape)
    fake = other_scene(90)
    fake[sticker] = pair.rgb_a[sticker]  # the same sticker at the same place, other skin
    corners = found.marker.corners_px
    with pytest.raises(AlignmentError, match="do not show the same skin"):
        align(pair.rgb_a, fake, skip_a=sticker, skip_b=sticker, marker_a=corners, marker_b=corners)
    same = align(
        pair.rgb_a, pair.rgb_a, skip_a=sticker, skip_b=sticker, marker_a=corners, marker_b=corners
    )
    assert same.method == "marker+features" and same.similarity > 0.9
    assert np.allclose(same.homography, np.eye(3), atol=1e-3)


def test_plan_warnings_name_what_differs(tmp_path: Path) -> None:
    pair = visit_pair(4)
    a, b = plan_pair(tmp_path, pair, cli=False)
    first, second = read_plan(a), read_plan(b)
    assert plan_warnings(first, second) == []
    darker = second.skin_tone.model_copy(update={"lab": (30.0, 15.0, 20.0), "hex": "#5a3a28"})
    model = second.source.model_copy(update={"kind": "model", "name": "m.onnx"})
    other = second.model_copy(update={"skin_tone": darker, "source": model})
    warnings = " | ".join(plan_warnings(first, other))
    assert "skin tones differ by ΔE76" in warnings and "one plan comes from a model" in warnings
