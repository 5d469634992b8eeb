"""The clinic's install: `pip install .` (no extras) in a fresh venv plans photos without torch."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest
from PIL import Image

from dermaseg.datasets.synth import generate_photo
from dermaseg.infer.schema import Plan


@pytest.mark.slow
def test_base_install_plans_without_torch(
    tiny_model: Path, dermaseg_wheel: Path, tmp_path: Path
) -> None:
    env_dir = tmp_path / "clinic-venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            str(dermaseg_wheel),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True)
    assert no_torch.returncode != 0, "torch must not come with the base install"
    photo = tmp_path / "photo.jpg"
    Image.fromarray(generate_photo(7, 256).rgb).save(photo, quality=90)
    result = subprocess.run(
        [
            str(env_dir / "bin" / "dermaseg"),
            "plan",
            str(photo),
            "--model",
            str(tiny_model),
            "-o",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    plan = Plan.model_validate_json((tmp_path / "out" / "photo.plan.json").read_text())
    assert plan.photo.width == 256 and plan.source.kind == "model"
    review = subprocess.run(
        [str(env_dir / "bin" / "dermaseg"), "review", str(tmp_path / "out"), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert review.returncode == 2  # the review desk is the [review] extra
    assert "[review]" in review.stderr and "Traceback" not in review.stderr
    train = subprocess.run(
        [str(env_dir / "bin" / "dermaseg"), "train", "--config", "synthetic-demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert train.returncode == 2
    assert "[train]" in train.stderr and "Traceback" not in train.stderr
