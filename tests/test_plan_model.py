"""`dermaseg plan` with an exported model: batches with bad files, wrong models, 12-MP memory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from dermaseg.datasets.synth import generate_photo
from dermaseg.infer.schema import Plan
from tests.conftest import run_cli


def synth_jpeg(path: Path, seed: int, size: int | tuple[int, int] = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(generate_photo(seed, size).rgb).save(path, quality=90)
    return path


def test_batch_goes_on_past_bad_files(tiny_model: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    synth_jpeg(folder / "a.jpg", 1)
    synth_jpeg(folder / "b.jpg", 2, size=(333, 517))
    (folder / "c.jpg").write_text("<html>not a photo</html>")
    (folder / "d.png").write_bytes(b"")
    (folder / "notes.txt").write_text("ignored: not a photo suffix")
    result = run_cli(
        "plan", str(folder), "--model", str(tiny_model), "-o", str(tmp_path / "out"), "--json"
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert sorted(Path(p["photo"]).name for p in summary["planned"]) == ["a.jpg", "b.jpg"]
    errors = {Path(f["photo"]).name: f["error"] for f in summary["failed"]}
    assert "not a recognised image format" in errors["c.jpg"]
    assert "empty file" in errors["d.png"]
    assert "c.jpg" in result.stderr and "d.png" in result.stderr
    plan = Plan.model_validate_json((tmp_path / "out" / "b.plan.json").read_text())
    assert (plan.photo.width, plan.photo.height) == (333, 517)
    assert sum(c.area_px for c in plan.classes) == 333 * 517
    assert plan.source.kind == "model" and plan.source.working_size == 96
    assert all(p.mean_confidence is not None for p in plan.patches)
    index = (tmp_path / "out" / "index.html").read_text()
    assert "a.html" in index and "c.jpg" in index


def test_wrong_models_are_one_line_errors(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not_dermaseg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    other = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), other)
    photo = synth_jpeg(tmp_path / "p.jpg", 3)
    for model, message in (
        (other, "not a dermaseg planning model"),
        (tmp_path / "p.jpg", "not a loadable ONNX model"),
        (tmp_path / "missing.onnx", "model file not found"),
    ):
        result = run_cli("plan", str(photo), "--model", str(model), "-o", str(tmp_path / "out"))
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and "Traceback" not in result.stderr
        assert result.stderr.count("\n") == 1


def test_a_12_megapixel_photo_stays_under_1_gb(tiny_model: Path, tmp_path: Path) -> None:
    """A phone photo with the default analysis (decoded at 1/4). The peak is the process's
    VmHWM, which, unlike ru_maxrss, does not carry over the parent's peak through exec."""
    photo = tmp_path / "phone.jpg"
    small = generate_photo(5, (1008, 756)).rgb
    Image.fromarray(small).resize((4032, 3024), Image.BILINEAR).save(photo, quality=90)
    code = (
        "import re, sys\n"
        "from dermaseg.cli import main\n"
        "sys.argv = ['dermaseg', 'plan', sys.argv[1], '--model', sys.argv[2], '-o', sys.argv[3]]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
        "status = open('/proc/self/status').read()\n"
        "print(re.search(r'VmHWM:\\s+(\\d+) kB', status).group(1))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(photo), str(tiny_model), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    peak_mib = int(result.stdout.split()[-1]) / 1024
    assert peak_mib < 1024, f"peak RSS {peak_mib:.0f} MiB"
    mask = np.asarray(Image.open(tmp_path / "out" / "phone.mask.png"))
    assert mask.shape == (3024, 4032)
