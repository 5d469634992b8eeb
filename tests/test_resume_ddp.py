"""Crash safety and scale-out, with real processes: kill -9, Ctrl-C, and torchrun on gloo."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("torch")

from dermaseg.datasets.synth import generate_dataset
from dermaseg.train.checkpoint import load_checkpoint
from dermaseg.train.evaluate import load_model

TINY = [
    "model.encoder_weights=null",
    "model.decoder_channels=[16,16,16,16,8]",
    "input.size=64",
    "train.batch_size=2",
    "train.workers=0",
    "train.overlay_every=0",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume") / "data"
    generate_dataset(root, n=40, size=96, seed=5)
    return root


def _command(data: Path, runs: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dermaseg",
        "train",
        "--config",
        "synthetic-demo",
        f"data={data}",
        f"runs_dir={runs}",
        f"train.epochs={epochs}",
        *TINY,
    ]


def _epochs_logged(run_dir: Path) -> list[int]:
    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    with path.open() as handle:
        return [int(row["epoch"]) for row in csv.DictReader(handle)]


def _start_and_wait_for_epoch(command: list[str], run_dir: Path, epoch: int) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while epoch not in _epochs_logged(run_dir):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "training did not reach the epoch in time"
        time.sleep(0.05)
    return process


def _resume(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dermaseg", "train", "--resume", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_kill_9_then_resume_loses_at_most_one_epoch(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "synthetic-demo"
    process = _start_and_wait_for_epoch(_command(data, tmp_path / "runs", 4), run_dir, 1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = max(_epochs_logged(run_dir))
    saved = load_checkpoint(run_dir / "weights" / "last").train_state
    assert saved.epoch == done_before  # the last checkpoint is the last completed epoch
    assert not list((run_dir / "weights").glob(".*.tmp"))  # no half-written file left behind
    result = _resume(run_dir)
    assert result.returncode == 0, result.stderr
    assert f"at epoch {done_before + 1}, step 0" in result.stderr
    assert _epochs_logged(run_dir) == [1, 2, 3, 4]
    assert load_checkpoint(run_dir / "weights" / "last").meta["epoch"] == 4


def test_ctrl_c_saves_mid_epoch_and_resumes(data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "synthetic-demo"
    process = _start_and_wait_for_epoch(_command(data, tmp_path / "runs", 3), run_dir, 1)
    time.sleep(1.0)  # into epoch 2
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Interrupted: saving a checkpoint" in stderr and "Traceback" not in stderr
    state = load_checkpoint(run_dir / "weights" / "last").train_state
    assert (state.epoch, state.step_in_epoch) != (0, 0)
    result = _resume(run_dir)
    assert result.returncode == 0, result.stderr
    assert f"at epoch {state.epoch + 1}, step {state.step_in_epoch}" in result.stderr
    assert _epochs_logged(run_dir) == [1, 2, 3]


@pytest.mark.skipif(
    shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None,
    reason="torchrun is not installed next to this Python",
)
def test_torchrun_two_processes_on_gloo(data: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    command = [
        torchrun,
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dermaseg",
        "train",
        "--config",
        "synthetic-demo",
        f"data={data}",
        f"runs_dir={tmp_path / 'runs'}",
        "train.epochs=2",
        *TINY,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert [r.name for r in runs] == ["synthetic-demo"]  # rank 0 alone creates and writes
    run_dir = runs[0]
    assert _epochs_logged(run_dir) == [1, 2]
    _, meta = load_model(run_dir / "weights" / "last")
    assert meta["world_size"] == 2 and meta["epoch"] == 2
