"""kill -9 in the middle of writing: plan of a folder, export, an atomic write; then rerun.

No file under a final name may be half-written, and the next run must redo or resume cleanly.
(Training killed mid-epoch and resumed: tests/test_resume_ddp.py.)
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from dermaseg.infer.outputs import SUFFIXES
from dermaseg.infer.schema import Plan
from tests.conftest import make_tiny_checkpoint, run_cli, write_image
from tests.hostile_corpus import fake_planning_model, smooth_rgb

PHOTOS = 24


def _start(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `dermaseg ARGS`; stderr goes to `log` (a pipe nobody reads could fill and block)."""
    with log.open("wb") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "dermaseg", *args],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )


def _kill_when(
    process: subprocess.Popen, ready: Callable[[], bool], log: Path | None = None, limit=300.0
) -> None:
    """SIGKILL `process` as soon as `ready()` holds; fail if it ends or times out first."""
    deadline = time.monotonic() + limit
    while not ready():
        assert process.poll() is None, log.read_text() if log else process.returncode
        assert time.monotonic() < deadline, "the process never reached the kill point"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL


def assert_outputs_whole(out: Path) -> None:
    """Every file under a final name parses: plans validate, JSON loads, PNGs decode, HTML ends."""
    for path in out.iterdir():
        if path.name.startswith("."):
            assert path.name.endswith(".tmp"), path  # only a killed write's temporary file
        elif path.name.endswith(".plan.json"):
            Plan.model_validate_json(path.read_text(encoding="utf-8"))
        elif path.suffix == ".json" or path.suffix == ".geojson":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".png":
            Image.open(path).load()
        elif path.suffix == ".html":
            assert path.read_text(encoding="utf-8").rstrip().endswith("</html>"), path


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    for i in range(PHOTOS):
        write_image(folder / f"p{i:02d}.jpg", smooth_rgb(240, 320, seed=i), quality=90)
    return folder


def test_kill_9_during_plan_of_a_folder(photo_folder: Path, tmp_path: Path) -> None:
    model = fake_planning_model(tmp_path / "fake.onnx")
    out = tmp_path / "out"
    args = ("plan", str(photo_folder), "-m", str(model), "--no-marker", "-o", str(out))
    log = tmp_path / "plan.log"
    process = _start(*args, log=log)
    _kill_when(process, lambda: len(list(out.glob("*.plan.json"))) >= 3, log)
    done = sorted(p.name.removesuffix(".plan.json") for p in out.glob("*.plan.json"))
    assert 3 <= len(done) < PHOTOS
    assert_outputs_whole(out)
    # the photos not yet started: a rerun on them alone plans them all
    untouched = [p for p in sorted(photo_folder.iterdir()) if not list(out.glob(f"{p.stem}.*"))]
    result = run_cli("plan", *map(str, untouched), "-m", str(model), "--no-marker", "-o", str(out))
    assert result.returncode == 0, result.stderr
    # the whole folder again: without --overwrite every planned photo is skipped, not failed,
    # and the index lists every plan in the folder
    result = run_cli(*args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert f"0 planned, 0 failed, {PHOTOS} skipped" in result.stdout
    index = (out / "index.html").read_text(encoding="utf-8")
    assert f"{PHOTOS} planned (" in index and ", 0 failed." in index
    assert "already exists" not in index
    result = run_cli(*args, "--overwrite")
    assert result.returncode == 0, result.stderr
    assert len(list(out.glob("*.plan.json"))) == PHOTOS
    for stem in (p.stem for p in photo_folder.iterdir()):
        assert all((out / f"{stem}{suffix}").is_file() for suffix in SUFFIXES.values())
    assert_outputs_whole(out)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # staging cleaned up


@pytest.mark.slow
def test_kill_9_during_export_leaves_no_model(tmp_path: Path) -> None:
    """Killed while verifying the staged model: nothing under the final name; a rerun exports."""
    pytest.importorskip("torch")
    checkpoint = make_tiny_checkpoint(tmp_path / "run")
    staging = tmp_path / "tmp"
    staging.mkdir()
    out = tmp_path / "run" / "model.onnx"
    args = ("export", str(checkpoint), "--out", str(out), "--working-size", "96")
    log = tmp_path / "export.log"
    process = _start(*args, log=log, env={"TMPDIR": str(staging)})
    _kill_when(process, lambda: bool(list(staging.glob("dermaseg-export-*/model.onnx"))), log)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".model.onnx")]
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    from dermaseg.infer.session import PlanningModel

    assert PlanningModel(out).working_size == 96


_WRITER = """
import sys, time
from dermaseg.fileio import atomic_open
with atomic_open(sys.argv[1]) as handle:
    for _ in range(1000):
        handle.write(bytes(1 << 20))
        handle.flush()
        time.sleep(0.01)
"""


def test_kill_9_during_an_atomic_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    process = subprocess.Popen([sys.executable, "-c", _WRITER, str(target)])

    def writing() -> bool:
        return any(p.stat().st_size > (4 << 20) for p in tmp_path.glob(".weights.bin.*.tmp"))

    _kill_when(process, writing, limit=60)
    assert target.read_bytes() == b"old"
    leftovers = [p.name for p in tmp_path.iterdir() if p != target]
    assert len(leftovers) == 1 and leftovers[0].startswith(".weights.bin.")


def test_planner_memory_does_not_grow_with_the_batch(tmp_path: Path) -> None:
    """What a batch keeps per planned photo (traced by tracemalloc) stays under 4 KB."""
    from dermaseg.datasets.images import encode_png
    from dermaseg.datasets.synth import generate_photo
    from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
    from dermaseg.infer.batch import BatchPlanner, CalibrationSettings

    photos, masks = [], []
    for seed in range(16):
        source = generate_photo(seed, (160, 120))
        photos.append(write_image(tmp_path / f"p{seed:02d}.png", source.rgb))
        masks.append(tmp_path / f"p{seed:02d}.mask.png")
        masks[-1].write_bytes(encode_png(source.mask, palette=DEFAULT_TAXONOMY.palette))
    settings = CalibrationSettings(detect_marker=False)

    def kept_bytes(count: int) -> int:
        planner = BatchPlanner(tmp_path / f"out{count}", calibration=settings)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        result = planner.run(photos[:count], masks[:count])
        gc.collect()
        assert len(result.planned) == count
        return tracemalloc.get_traced_memory()[0] - before

    tracemalloc.start()
    try:
        kept_bytes(2)  # warm-up: caches, lazily built tables
        per_photo = (kept_bytes(16) - kept_bytes(4)) / 12
    finally:
        tracemalloc.stop()
    assert per_photo < 4096, f"{per_photo / 1024:.1f} KiB kept per planned photo"
