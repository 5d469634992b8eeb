"""The HTML report and index render in headless Chromium (skipped where there is no Chromium)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.batch import PlanSummary
from dermaseg.infer.overlay import render_overlay
from dermaseg.infer.report_html import render_index, render_report
from tests.conftest import REPO
from tests.plan_factory import make_plan, synthetic_mask, synthetic_photo

SCRIPT = REPO / "benchmarks" / "render_report_chromium.py"


def find_chromium() -> str | None:
    spec = importlib.util.spec_from_file_location("render_report_chromium", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.find_chromium()


pytestmark = pytest.mark.skipif(
    find_chromium() is None,
    reason="no headless Chromium: apt-get install chromium-headless-shell "
    "(or set DERMASEG_CHROMIUM)",
)


def check(page: Path, screenshot: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(page), "--screenshot", str(screenshot), *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_report(folder: Path, name: str, overlay: bytes) -> Path:
    mask = synthetic_mask(240, 320)
    plan = make_plan(mask, name=name)
    path = folder / "report.html"
    path.write_text(render_report(plan, overlay, DEFAULT_TAXONOMY), encoding="utf-8")
    return path


def test_report_renders_with_its_overlay(tmp_path: Path) -> None:
    mask = synthetic_mask(240, 320)
    plan = make_plan(mask, name="<script>x</script>.jpg")
    overlay = encode_png(render_overlay(synthetic_photo(240, 320), mask, plan, DEFAULT_TAXONOMY))
    page = write_report(tmp_path, plan.photo.name, overlay)
    screenshot = tmp_path / "report.png"
    result = check(page, screenshot, "--min-images", "1", "--title", "<script>x</script>.jpg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 image(s) [320] px wide" in result.stdout
    with Image.open(screenshot) as image:
        assert image.width == 1200 and image.height > 800


def test_index_renders(tmp_path: Path) -> None:
    plan = make_plan(synthetic_mask())
    entries = [(PlanSummary.from_plan(Path("photo.jpg"), "photo", plan), tmp_path / "p.html")]
    failures = [{"photo": "broken.jpg", "error": "truncated JPEG"}]
    page = tmp_path / "index.html"
    page.write_text(render_index(entries, failures, tmp_path), encoding="utf-8")
    result = check(page, tmp_path / "index.png")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_overlay_fails_the_check(tmp_path: Path) -> None:
    """A PNG signature followed by garbage: the page loads but the image does not decode."""
    page = write_report(tmp_path, "photo.jpg", b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    result = check(page, tmp_path / "broken.png", "--min-images", "1")
    assert result.returncode == 1
    assert "did not decode" in result.stderr


def test_a_page_loading_from_outside_fails_the_check(tmp_path: Path) -> None:
    page = tmp_path / "outside.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>dermaseg</title></head><body><p>text</p>"
        '<img alt="remote" src="https://dermaseg.invalid/x.png"></body></html>'
    )
    result = check(page, tmp_path / "outside.png")
    assert result.returncode == 1
    assert "request outside the page: https://dermaseg.invalid/x.png" in result.stderr
