"""`dermaseg score salt|fvasi` on synthetic photos with exact truth, through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermaseg.datasets.images import decode_image, encode_jpeg, encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.synth_scalp import SALT_WEIGHTS, salt_views
from dermaseg.infer.scores import FTU_PER_HAND, fingertip_cm2, fvasi, salt, salt_band, view_loss
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("score", "band"),
    [
        (0.0, "S0"),
        (0.4, "S0"),
        (0.6, "S1"),
        (24.4, "S1"),
        (25.0, "S2"),
        (49.6, "S3"),
        (74.9, "S4"),
        (99.4, "S4"),
        (99.6, "S5"),
        (100.0, "S5"),
    ],
)
def test_salt_bands(score: float, band: str) -> None:
    assert salt_band(score) == band


def write_views(folder: Path, seed: int, shares: dict[str, float]) -> tuple[list[str], dict]:
    folder.mkdir(parents=True, exist_ok=True)
    views, truth = salt_views(seed, shares)
    args = []
    for view in views:
        (folder / f"{view.name}.jpg").write_bytes(encode_jpeg(view.rgb, 90))
        (folder / f"{view.name}.png").write_bytes(encode_png(view.mask))
        args += [f"--{view.name}", str(folder / f"{view.name}.jpg")]
        args += [f"--mask-{view.name}", str(folder / f"{view.name}.png")]
    return args, {"truth": truth, "views": views}


def test_salt_from_four_views_matches_the_generator(tmp_path: Path) -> None:
    shares = {"top": 0.62, "back": 0.35, "left": 0.12, "right": 0.05}
    args, made = write_views(tmp_path, 4, shares)
    truth = made["truth"]
    nominal = sum(SALT_WEIGHTS[k] * 100 * v for k, v in shares.items())
    assert truth["salt"] == pytest.approx(nominal, abs=0.05)  # the generator makes what it says
    for view in made["views"]:  # the loss region really has less hair than the rest
        if 0 < view.loss_fraction < 1:
            hair = view.hair_alpha
            assert hair[view.mask > 0].mean() < 0.5 * hair[view.mask == 0].mean()
    result = run_cli("score", "salt", *args, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert abs(report["salt"] - truth["salt"]) <= 5.0
    assert report["band"] == salt_band(truth["salt"])
    for name, row in report["views"].items():
        assert row["loss_percent"] == pytest.approx(100 * truth["loss_fraction"][name], abs=0.01)
        assert row["photo"].endswith(f"{name}.jpg") and row["mask_from"] == f"mask {name}.png"
        assert "loss px /" in row["computed"] and row["weight"] == SALT_WEIGHTS[name]
    assert "0.40 x top" in report["formula"]
    text = run_cli("score", "salt", *args)
    assert text.returncode == 0 and text.stdout.startswith(f"SALT {report['salt']:.1f}")


def test_salt_refuses_incomplete_masks(tmp_path: Path) -> None:
    args, _ = write_views(tmp_path, 5, {"top": 0.2})
    result = run_cli("score", "salt", *args[:-2])  # no --mask-right
    assert result.returncode == 2 and "give a mask for every view" in result.stderr


def test_fvasi_in_fingertip_units(tmp_path: Path) -> None:
    photo = generate_photo(31, 256, with_marker=True, kind="skin")
    (tmp_path / "face.jpg").write_bytes(encode_jpeg(photo.rgb, 95))
    (tmp_path / "face.png").write_bytes(encode_png(photo.mask))
    args = ["score", "fvasi", str(tmp_path / "face.jpg"), "--mask", str(tmp_path / "face.png")]
    scale = photo.entry["mm_per_pixel"]
    area_cm2 = int(np.count_nonzero(photo.mask == 1)) * scale**2 / 100
    assert area_cm2 > 0
    result = run_cli(*args, "--mm-per-pixel", str(scale), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    ftu = 180.0 / FTU_PER_HAND
    assert report["lesion_ftu"] == pytest.approx(area_cm2 / ftu, rel=1e-3)
    assert report["fvasi_ftu"] == report["lesion_ftu"] and "assumed" in report["ftu_source"]
    marker = json.loads(run_cli(*args, "--json").stdout)  # scale from the photo's marker
    assert marker["photos"][0]["calibration"] == "marker"
    assert marker["lesion_ftu"] == pytest.approx(area_cm2 / ftu, rel=0.05)
    decoded = decode_image((tmp_path / "face.jpg").read_bytes(), "face.jpg").pixels
    (tmp_path / "plain.png").write_bytes(encode_png(np.ascontiguousarray(decoded[60:200, :])))
    (tmp_path / "plain_mask.png").write_bytes(encode_png(photo.mask[60:200, :]))
    uncalibrated = run_cli(
        "score", "fvasi", str(tmp_path / "plain.png"), "--mask", str(tmp_path / "plain_mask.png")
    )
    assert uncalibrated.returncode == 2 and "no calibration for" in uncalibrated.stderr


def test_salt_and_fvasi_arithmetic() -> None:
    views, truth = salt_views(9, {"top": 0.15, "back": 0.0, "left": 0.45, "right": 0.3})
    counted = {}
    for view in views:
        loss, scalp, percent = view_loss(view.mask, [3], None)
        counted[view.name] = {"loss_px": loss, "scalp_px": scalp}
        assert percent == pytest.approx(100 * view.loss_fraction)
    marker = np.zeros(views[0].mask.shape, bool)
    marker[:10, :10] = True
    assert view_loss(views[0].mask, [3], marker)[1] == views[0].mask.size - 100
    assert salt(counted)["salt"] == pytest.approx(truth["salt"], abs=0.01)
    with pytest.raises(ValueError, match="right"):
        salt({k: v for k, v in counted.items() if k != "right"})
    photos = [{"photo": "a.jpg", "lesion_px": 10_000, "mm_per_pixel": 0.1}]  # 1 cm²
    half = fvasi(photos, *fingertip_cm2(2.5, None), depigmentation=50)
    assert half["lesion_ftu"] == pytest.approx(0.4) and half["fvasi_ftu"] == pytest.approx(0.2)
    assert fingertip_cm2(None, 160.5)[0] == pytest.approx(5.0)
    with pytest.raises(ValueError, match="depigmentation must be one of"):
        fvasi(photos, 2.5, "given", depigmentation=60)
