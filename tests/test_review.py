"""The review desk's server over a real plan folder: token, host, size limits, paths outside the
folder, save and re-plan with the recorded options, patient fields, export of corrections."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the [review] extra (starlette) is not installed")
from starlette.testclient import TestClient

from dermaseg.datasets.images import load_mask
from dermaseg.errors import DermasegError
from dermaseg.infer.review.app import COOKIE, create_app
from dermaseg.infer.review.export import export_corrections
from dermaseg.infer.review.folder import PlanFolder
from dermaseg.infer.schema import Plan
from tests.conftest import run_cli
from tests.review_helpers import make_plan_folder

TOKEN = "test-token-123"
BASE = "http://127.0.0.1:8123"


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_plan_folder(tmp_path_factory.mktemp("review"))


@pytest.fixture
def out(planned: Path, tmp_path: Path) -> Path:
    """A fresh copy of the plan folder for each test."""
    copy = tmp_path / "out"
    copy.mkdir()
    for path in planned.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    return copy


def client(folder: Path, cookie: bool = True) -> TestClient:
    app = create_app(PlanFolder(folder), TOKEN, 8123)
    c = TestClient(app, base_url=BASE)
    if cookie:
        c.cookies.set(COOKIE, TOKEN)
    return c


def get_mask(c: TestClient, stem: str) -> np.ndarray:
    r = c.get(f"/api/photo/mask?stem={stem}")
    assert r.status_code == 200
    return np.frombuffer(r.content, np.uint8).reshape(
        int(r.headers["x-height"]), int(r.headers["x-width"])
    )


def post_mask(c: TestClient, stem: str, mask: np.ndarray, **headers: str):
    sizes = {"x-width": str(mask.shape[1]), "x-height": str(mask.shape[0])}
    return c.post(f"/api/photo/mask?stem={stem}", content=mask.tobytes(), headers=sizes | headers)


def test_every_request_needs_the_token_and_the_loopback_host(out: Path) -> None:
    anonymous = client(out, cookie=False)
    for path in ("/", "/api/photos", "/api/photo/file?stem=p1&kind=photo", "/static/app.js"):
        assert anonymous.get(path).status_code == 403, path
    assert anonymous.get("/?token=wrong").status_code == 403
    assert anonymous.post("/api/export").status_code == 403
    assert anonymous.get("/api/photos", headers={"x-review-token": TOKEN}).status_code == 200
    exchange = anonymous.get(f"/?token={TOKEN}", follow_redirects=False)
    assert exchange.status_code == 303 and exchange.headers["location"] == "/"
    cookie = exchange.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    c = client(out)
    assert c.get("/api/photos", headers={"host": "attacker.example:8123"}).status_code == 421
    page = c.get("/")
    assert page.status_code == 200 and 'src="/static/app.js"' in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    report = c.get("/api/photo/file?stem=p1&kind=report")
    assert report.headers.get_list("content-security-policy") == [
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    ]


def test_the_list_puts_photos_needing_review_first(out: Path) -> None:
    raw = json.loads((out / "p6.plan.json").read_text())
    raw["review"] = {"needs_review": True, "reasons": [{"code": "x", "text": "low confidence"}]}
    (out / "p6.plan.json").write_text(json.dumps(raw))
    raw = json.loads((out / "p1.plan.json").read_text())
    raw["review"] = {"needs_review": False, "reasons": []}
    (out / "p1.plan.json").write_text(json.dumps(raw))
    photos = client(out).get("/api/photos").json()["photos"]
    assert [(p["stem"], p["needs_review"]) for p in photos] == [("p6", True), ("p1", False)]
    assert photos[0]["reasons"] == ["low confidence"]
    assert photos[0]["procedure"] == "Vitiligo camouflage" and photos[0]["sessions"]


def test_nothing_outside_the_folder_is_read_or_written(out: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.plan.json"
    secret.write_text((out / "p1.plan.json").read_text())
    (out / "linked.plan.json").symlink_to(secret)  # a symlinked plan is not listed
    os.replace(out / "p6.photo.jpg", tmp_path / "p6.photo.jpg")
    (out / "p6.photo.jpg").symlink_to(tmp_path / "p6.photo.jpg")
    c = client(out)
    assert [p["stem"] for p in c.get("/api/photos").json()["photos"]] == ["p1", "p6"]
    refused = [
        "/api/photo/file?stem=linked&kind=photo",
        "/api/photo/file?stem=p6&kind=photo",  # a symlink
        "/api/photo/file?stem=..%2Fsecret&kind=photo",
        "/api/photo/mask?stem=%2Fetc%2Fpasswd",
        "/api/photo/file?stem=p1&kind=plan",  # not a kind the page needs
        "/api/photo/file?stem=p1&kind=..%2F..%2Fsecret.plan.json",
        "/static/..%2F..%2Fapp.py",
        "/static/index.py",
    ]
    for path in refused:
        assert c.get(path).status_code == 404, path
    mask = get_mask(c, "p1")
    assert post_mask(c, "..%2Fsecret", mask).status_code == 404
    assert post_mask(c, "p6", get_mask(c, "p6")).status_code == 404  # its photo is a symlink
    assert not (out / "p6.corrected.png").exists()
    assert secret.read_text() == (out / "p1.plan.json").read_text()


def test_request_sizes_are_bounded(out: Path) -> None:
    c = client(out)
    mask = get_mask(c, "p1")
    big = np.zeros((mask.shape[0] + 1, mask.shape[1]), np.uint8)
    assert post_mask(c, "p1", big).status_code == 400  # not the photo's size
    short = c.post(
        "/api/photo/mask?stem=p1",
        content=mask.tobytes()[:-1],
        headers={"x-width": str(mask.shape[1]), "x-height": str(mask.shape[0])},
    )
    assert short.status_code == 400
    huge = c.post("/api/photo/meta?stem=p1", content=b"{" + b" " * 200_000 + b"}")
    assert huge.status_code == 400
    assert c.post(
        "/api/photo/mask?stem=p1", content=b"", headers={"content-length": str(2**40)}
    ).status_code in (400, 413)
    assert not (out / "p1.corrected.png").exists()


def test_save_replans_with_the_recorded_options_and_keeps_the_models_mask(out: Path) -> None:
    c = client(out)
    before = Plan.model_validate_json((out / "p1.plan.json").read_text())
    model_mask = (out / "p1.mask.png").read_bytes()
    mask = get_mask(c, "p1").copy()
    mask[100:130, 100:140] = 1  # a new vitiligo patch
    mask[mask == 2] = 0  # scars removed
    r = post_mask(c, "p1", mask)
    assert r.status_code == 200, r.text
    assert r.json()["corrected"] is True
    after = Plan.model_validate_json((out / "p1.plan.json").read_text())
    assert (out / "p1.mask.png").read_bytes() == model_mask
    assert np.array_equal(load_mask(out / "p1.corrected.png"), mask)
    assert np.array_equal(get_mask(c, "p1"), mask)
    model = c.get("/api/photo/mask?stem=p1&of=model")  # "Model's mask": start again from it
    assert np.array_equal(
        np.frombuffer(model.content, np.uint8), load_mask(out / "p1.mask.png").ravel()
    )
    assert after.correction is not None and after.correction.by == "person"
    assert after.correction.original_mask == "p1.mask.png"
    assert after.correction.original_source.name == "p1.png"
    assert after.source.kind == "mask" and after.source.name == "p1.corrected.png"
    assert after.options == before.options and after.meta == before.meta
    assert after.calibration == before.calibration and after.photo == before.photo
    assert after.procedure.name == "vitiligo-camouflage"
    assert after.procedure.margin.value == 1.5 and after.procedure.margin.source == "clinic setting"
    vitiligo = {c.name: c.area_px for c in after.classes}
    assert vitiligo["vitiligo"] == int((mask == 1).sum()) and vitiligo["scar"] == 0
    assert after.treatable.area_px > before.treatable.area_px
    report = (out / "p1.html").read_text()
    assert "Corrected by a person" in report and "p1.corrected.png" in report
    index = (out / "index.html").read_text()
    assert "corrected by a person" in index and index.count("data:image/jpeg") == 2


def test_patient_fields_are_saved_and_escaped_in_the_report(out: Path) -> None:
    c = client(out)
    fields = {"patient": "P-9", "visit": "2", "notes": "<script>alert(1)</script>"}
    r = c.post("/api/photo/meta?stem=p6", json=fields)
    assert r.status_code == 200 and r.json()["meta"] == fields
    plan = Plan.model_validate_json((out / "p6.plan.json").read_text())
    assert plan.meta == fields and plan.correction is None
    report = (out / "p6.html").read_text()
    assert "P-9" in report and "&lt;script&gt;alert(1)&lt;/script&gt;" in report
    assert "<script>" not in report
    bad = c.post("/api/photo/meta?stem=p6", json={"patinet": "x"})
    assert bad.status_code == 400 and "did you mean patient" in bad.json()["error"]


def test_export_corrections_from_the_button_and_the_command(out: Path, tmp_path: Path) -> None:
    c = client(out)
    assert c.post("/api/export").status_code == 400  # nothing corrected yet
    mask = get_mask(c, "p6").copy()
    mask[:20, :20] = 2
    assert post_mask(c, "p6", mask).status_code == 200
    r = c.post("/api/export")
    assert r.status_code == 200 and r.json()["photos"] == ["p6"]
    exported = out / "corrections-dataset"
    assert np.array_equal(load_mask(exported / "masks" / "p6.png"), mask)
    assert c.post("/api/export").status_code == 200  # the button replaces its own export
    dest = tmp_path / "dataset"
    cli = run_cli("review", str(out), "--export", str(dest), "--json")
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout)["photos"] == ["p6"]
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["p6.jpg"]
    check = run_cli("data", "check", str(dest), "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    with pytest.raises(DermasegError, match="not empty"):
        export_corrections(PlanFolder(out), dest)  # nothing is overwritten


def test_a_large_photo_planned_by_the_model_is_corrected_at_its_analysed_size(
    tiny_model: Path, tmp_path: Path
) -> None:
    """A 2000x1500 JPEG is analysed at 1/2 (the model's working size is small): the page edits
    NAME.photo.jpg at 1000x750, the corrected mask is written at the photo's full size, and the
    re-plan's areas are in full-size pixels, as the model's plan's were."""
    from PIL import Image

    from dermaseg.datasets.synth import generate_photo

    photo = generate_photo(1, 500, with_marker=False, photo_id="big").rgb
    Image.fromarray(photo).resize((2000, 1500)).save(tmp_path / "big.jpg", quality=90)
    result = run_cli(
        "plan",
        str(tmp_path / "big.jpg"),
        "--model",
        str(tiny_model),
        "--out",
        str(tmp_path / "out"),
        "--mm-per-pixel",
        "0.05",
    )
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out"
    before = Plan.model_validate_json((out / "big.plan.json").read_text())
    assert before.photo.analysis_scale == 2 and before.source.kind == "model"
    c = client(out)
    mask = get_mask(c, "big").copy()
    assert mask.shape == (750, 1000)
    mask[:] = 0
    mask[100:300, 200:500] = 1
    assert post_mask(c, "big", mask).status_code == 200
    after = Plan.model_validate_json((out / "big.plan.json").read_text())
    assert load_mask(out / "big.corrected.png").shape == (1500, 2000)
    assert after.photo == before.photo and after.calibration == before.calibration
    vitiligo = next(t for t in after.classes if t.name == "vitiligo")
    assert vitiligo.area_px == 4 * 200 * 300
    assert vitiligo.area_mm2 == pytest.approx(4 * 200 * 300 * 0.05**2)
    assert after.correction.original_source.kind == "model"
    assert after.options.model == tiny_model.name


def test_replan_finds_the_previous_plan_only_in_the_folder(out: Path) -> None:
    from dermaseg.infer.review.replan import procedure_options

    folder = PlanFolder(out)
    options = folder.plan("p1").options
    found, warning = procedure_options(
        folder, options.model_copy(update={"previous": "p6.plan.json"})
    )
    assert warning is None and found.previous.photo.name == "p6.jpg"
    assert found.clinic.procedures == {"vitiligo-camouflage": {"margin_mm": 1.5}}
    missing, warning = procedure_options(
        folder, options.model_copy(update={"previous": "/elsewhere/visit0.plan.json"})
    )
    assert missing.previous is None and warning.code == "previous-not-in-folder"
    assert "visit0.plan.json is not in the plan folder" in warning.text


def test_plans_in_subfolders_are_listed_and_corrected(out: Path, tmp_path: Path) -> None:
    """A folder planned with --recursive keeps SUB/NAME outputs; a symlinked folder is not
    entered."""
    sub = out / "alice"
    sub.mkdir()
    for path in out.glob("p1.*"):
        (sub / path.name).write_bytes(path.read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.plan.json").write_text((out / "p6.plan.json").read_text())
    (out / "linked").symlink_to(elsewhere, target_is_directory=True)
    c = client(out)
    assert [p["stem"] for p in c.get("/api/photos").json()["photos"]] == ["alice/p1", "p1", "p6"]
    assert c.get("/api/photo?stem=linked/x").status_code == 404
    mask = get_mask(c, "alice/p1").copy()
    mask[:10, :10] = 2
    assert post_mask(c, "alice/p1", mask).status_code == 200
    assert np.array_equal(load_mask(sub / "p1.corrected.png"), mask)
    assert not (out / "p1.corrected.png").exists()
    assert 'href="alice/p1.html"' in (out / "index.html").read_text()
