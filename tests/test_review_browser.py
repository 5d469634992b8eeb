"""The review desk in a real browser: Playwright drives Debian's Chromium against the real
`dermaseg review` server. Paint a stroke, save, and the new mask and plan are on disk; export the
corrections and `dermaseg train` fine-tunes on them; no token, no entry; CSP blocks the outside.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dermaseg.datasets.images import load_mask
from dermaseg.infer.schema import Plan
from dermaseg.train.checkpoint import load_checkpoint
from tests.conftest import make_tiny_checkpoint, run_cli
from tests.review_helpers import make_plan_folder

CHROMIUM = os.environ.get("DERMASEG_CHROMIUM", "/usr/bin/chromium")
pytest.importorskip("starlette", reason="the [review] extra (starlette, uvicorn) is not installed")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (pip) is not installed")
pytestmark = pytest.mark.skipif(
    shutil.which(CHROMIUM) is None,
    reason=f"no Chromium at {CHROMIUM}: apt-get install chromium (or set DERMASEG_CHROMIUM)",
)
TINY_MODEL = (
    "model.encoder_weights=null",
    "model.decoder_channels=[16,16,16,16,8]",
    "input.size=64",
    "train.batch_size=2",
    "train.workers=0",
    "train.epochs=1",
)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`dermaseg review OUT --no-browser` in a subprocess; yields (URL with token, OUT)."""
    out = make_plan_folder(tmp_path)
    process = subprocess.Popen(
        [sys.executable, "-m", "dermaseg", "review", str(out), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:") and "?token=" in url, process.stderr.read()
    yield url, out
    process.send_signal(signal.SIGINT)  # Ctrl-C stops it cleanly
    try:
        assert process.wait(timeout=60) == 0  # 0.7 s on a quiet machine
    finally:
        if process.poll() is None:
            process.kill()
    assert "Review desk stopped" in process.stderr.read()


def open_app(browser, url: str):
    page = browser.new_page(viewport={"width": 1300, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(url)
    page.wait_for_selector("#list li")
    page.wait_for_function("() => document.getElementById('empty').style.display === 'none'")
    return page, errors


def paint(page, class_name: str, points: list[tuple[float, float]]) -> None:
    """Drag the brush over the photo through `points` given as fractions of the canvas."""
    page.get_by_role("button", name=class_name).click()
    box = page.locator("#mask").bounding_box()
    x0, y0 = box["x"] + points[0][0] * box["width"], box["y"] + points[0][1] * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for fx, fy in points[1:]:
        page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"], steps=8)
    page.mouse.up()


def test_paint_save_export_and_fine_tune(browser, server, tmp_path: Path) -> None:
    url, out = server
    page, errors = open_app(browser, url)
    stem = page.locator("#list li").first.get_attribute("data-stem")
    model_mask = (out / f"{stem}.mask.png").read_bytes()
    before = load_mask(out / f"{stem}.mask.png")
    page.fill("#size", "20")  # a wide brush
    page.dispatch_event("#size", "input")
    page.get_by_role("button", name="+").click()  # zoomed in: strokes still land where drawn
    page.get_by_role("button", name="+").click()
    paint(page, "scar", [(0.45, 0.55), (0.6, 0.55), (0.6, 0.62)])
    assert page.locator("#undo").is_enabled()
    page.get_by_role("button", name="Save and re-plan").click()
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Saved')"
    )
    corrected = load_mask(out / f"{stem}.corrected.png")
    assert (out / f"{stem}.mask.png").read_bytes() == model_mask  # the model's mask is kept
    added = (corrected == 2) & (before != 2)
    assert added.sum() > 300 and (corrected != before).sum() == added.sum()
    rows, cols = np.nonzero(added)
    height, width = corrected.shape
    radius = 20 / 2 + 1  # the stroke's path, widened by the brush
    assert 0.45 * width - radius <= cols.min() and cols.max() <= 0.6 * width + radius
    assert 0.55 * height - radius <= rows.min() and rows.max() <= 0.62 * height + radius
    assert cols.max() - cols.min() >= 0.15 * width - 2  # the whole stroke, not one dab
    plan = Plan.model_validate_json((out / f"{stem}.plan.json").read_text())
    assert plan.correction is not None and plan.correction.tool == "dermaseg review"
    assert next(c for c in plan.classes if c.name == "scar").area_px == int((corrected == 2).sum())
    assert page.locator(f'#list li[data-stem="{stem}"] .badge.corrected').count() == 1
    other = page.locator(f'#list li:not([data-stem="{stem}"])').first  # training needs two
    other_stem = other.get_attribute("data-stem")
    other.click()
    page.wait_for_function(
        f"() => document.getElementById('title').textContent.startsWith('{other_stem}')"
    )
    page.get_by_role("button", name="Fill").click()  # fill the background with vitiligo
    box = page.locator("#mask").bounding_box()
    page.mouse.click(box["x"] + 0.5 * box["width"], box["y"] + 0.97 * box["height"])
    page.get_by_role("button", name="Undo").click()
    page.get_by_role("button", name="Redo").click()
    page.get_by_role("button", name="Save and re-plan").click()
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Saved')"
    )
    filled = load_mask(out / f"{other_stem}.corrected.png")
    assert (filled == 0).sum() < 0.5 * (load_mask(out / f"{other_stem}.mask.png") == 0).sum()
    page.get_by_role("button", name="Export corrections").click()
    page.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('Exported')"
    )
    dataset = out / "corrections-dataset"
    masks = sorted(p.name for p in (dataset / "masks").iterdir())
    assert masks == sorted([f"{stem}.png", f"{other_stem}.png"])
    assert errors == []

    pytest.importorskip("torch", reason="fine-tuning needs the [train] extra")
    checkpoint = make_tiny_checkpoint(tmp_path / "base")
    result = run_cli(
        "train",
        "--config",
        "synthetic-demo",
        f"data={dataset}",
        f"runs_dir={tmp_path / 'runs'}",
        f"model.init_from={checkpoint}",
        *TINY_MODEL,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "runs" / "synthetic-demo"
    assert (run / "weights" / "best.safetensors").is_file()
    config = load_checkpoint(run / "weights" / "best").meta["config"]
    assert config["model"]["init_from"] == str(checkpoint)


def test_no_token_no_entry_and_the_page_reaches_nothing_outside(browser, server) -> None:
    url, _ = server
    base = url.split("?")[0]
    stranger = browser.new_context()
    response = stranger.new_page().goto(base + "api/photos")
    assert response.status == 403
    assert stranger.request.get(base + "api/photo/file?stem=p1&kind=photo").status == 403
    stranger.close()
    page, errors = open_app(browser, url)
    outside = page.request.get(base + "api/photo/file?stem=..%2F..%2Fclinic.yaml&kind=photo")
    assert outside.status == 404
    violated = page.evaluate(
        """() => new Promise((resolve) => {
            document.addEventListener(
                'securitypolicyviolation', (e) => resolve(e.violatedDirective));
            fetch('http://192.0.2.1/leak').catch(() => {});
        })"""
    )
    assert violated == "connect-src"
    assert errors == []
