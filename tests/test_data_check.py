"""`dermaseg data check` end to end, in a real subprocess: problems, statistics, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from tests.conftest import make_mask_dataset, run_cli, write_image


def _check(root: Path) -> tuple[int, dict, str]:
    result = run_cli("data", "check", str(root), "--json")
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def test_clean_dataset_passes(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path / "ds", n=10)
    code, report, _ = _check(root)
    assert code == 0 and report["errors"] == 0 and report["photos"] == 10
    by_class = {c["class"]: c for c in report["classes"]}
    assert by_class["vitiligo"]["photos"] == 10 and by_class["thinning"]["pixels"] > 0
    assert abs(sum(c["fraction"] for c in report["classes"]) - 1) < 1e-9
    assert report["sizes"]["most_common"] == [{"size": "48x40", "photos": 10}]
    assert sum(report["splits"].values()) == 10


def test_every_problem_is_reported_and_exit_is_one(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path / "ds", n=8, yaml_text="split: {file: splits.yaml}\n")
    images, masks = root / "images", root / "masks"
    (images / "p00.png").write_bytes(b"not a photo")  # unreadable image
    (masks / "p01.png").unlink()  # missing mask
    write_image(masks / "p02.png", np.zeros((10, 10), np.uint8))  # size mismatch
    write_image(masks / "p03.png", np.full((40, 48), 9, np.uint8))  # unknown values
    write_image(masks / "p04.png", np.zeros((40, 48), np.uint8))  # empty mask
    shutil.copy(images / "p05.png", images / "p09.png")  # same photo as p05, other split
    shutil.copy(masks / "p05.png", masks / "p09.png")
    (root / "splits.yaml").write_text(
        "train: [p00, p01, p02, p03, p04, p05]\nval: [p06, p09]\ntest: [p07]\n"
    )
    code, report, _ = _check(root)
    assert code == 1
    found = {(p["kind"], Path(p["path"]).name) for p in report["problems"]}
    expected = {
        ("unreadable-image", "p00.png"),
        ("missing-mask", "p01.png"),
        ("bad-mask", "p02.png"),
        ("bad-mask", "p03.png"),
        ("empty-mask", "p04.png"),
        ("duplicate-across-splits", "p05.png"),
    }
    assert expected <= found, expected - found
    messages = " | ".join(p["message"] for p in report["problems"])
    assert (
        "unknown mask values 9" in messages and "mask is 10x10 but the photo is 48x40" in messages
    )
    assert report["errors"] == 5 and report["readable"] == 5  # p04-p07 and p09


def test_human_report_and_bad_dataset_exit_two(tmp_path: Path) -> None:
    root = make_mask_dataset(tmp_path / "ds", n=3)
    (root / "images" / "p00.png").write_bytes(b"")
    (root / "images" / "p01.png").write_bytes(b"")
    result = run_cli("data", "check", str(root))
    assert result.returncode == 1
    report = result.stdout  # results on stdout, so `data check DIR > report.txt` keeps them
    assert "empty file (0 bytes)" in report and "FAILED: 2 errors" in report
    row = next(line for line in report.splitlines() if "empty file (0 bytes)" in line)
    assert "unreadable-image" in row and "│ 2 " in row  # two files, one row with a count
    missing = run_cli("data", "check", str(tmp_path / "nowhere"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"error: {tmp_path / 'nowhere'}: dataset not found"
    (tmp_path / "bad.yaml").write_text("fromat: masks\n")
    bad = run_cli("data", "check", str(tmp_path / "bad.yaml"))
    assert bad.returncode == 2 and "did you mean 'format'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr
