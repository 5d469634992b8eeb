"""SMP dot density and size from the patient's hair, against synthetic scalps of known strand
counts; and the hook that puts it into SMP plans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermaseg.datasets.images import decode_image, encode_jpeg, encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.synth_scalp import smp_scalp
from dermaseg.infer.smp_density import measure_density, strands_are_dark
from tests.conftest import run_cli

CASES = [(0, 50.0, 0.06), (1, 70.0, 0.08), (2, 90.0, 0.10), (4, 130.0, 0.08), (9, 130.0, 0.06)]


def jpeg(rgb: np.ndarray) -> np.ndarray:
    return decode_image(encode_jpeg(rgb, 90), "scalp.jpg").pixels


@pytest.mark.parametrize(("seed", "density", "width"), CASES)
def test_density_within_10_percent_on_dark_haired_scalps(seed, density, width) -> None:
    scalp = smp_scalp(seed, density_per_cm2=density, strand_width_mm=width)
    rgb = jpeg(scalp.rgb)
    result = measure_density(rgb, scalp.mask > 0, np.zeros(scalp.mask.shape, bool), 0.05)
    truth = scalp.truth
    measured = result.dot_density.value
    assert result.dot_density.unit == "strands/cm2" and result.warnings == []
    assert abs(measured / truth["density_per_cm2"] - 1) <= 0.10, (measured, truth)
    assert 0 < result.dot_density_uncertainty < 0.2 * measured
    assert abs(result.dot_size.value / truth["strand_width_mm"] - 1) <= 0.30
    assert result.dot_size.unit == "mm"


def test_hair_polarity_and_uncountable_hair_warn() -> None:
    scalp = smp_scalp(3)
    assert strands_are_dark(jpeg(scalp.rgb), scalp.mask == 0)
    bare = generate_photo(21, (192, 160), with_marker=False, kind="skin").rgb
    nothing = np.zeros(bare.shape[:2], bool)
    result = measure_density(bare, nothing, nothing, 0.05, dark=True)
    assert result.dot_density is None and result.dot_size is None
    assert "hair density not measured" in result.warnings[0]
    none = np.zeros(scalp.mask.shape, bool)
    long_hair = generate_photo(3, (192, 160), with_marker=False, kind="scalp")
    crossing = measure_density(long_hair.rgb, long_hair.mask > 0, long_hair.mask == 1, 0.3)
    assert crossing.dot_density is None and "hair density not measured" in crossing.warnings[0]
    uncalibrated = measure_density(jpeg(scalp.rgb), scalp.mask > 0, none, None, dark=True)
    assert uncalibrated.dot_density.unit == "strands/10k px"
    assert "not calibrated" in uncalibrated.warnings[0]


def test_smp_plans_carry_the_dot_target(tmp_path: Path) -> None:
    scalp = smp_scalp(6, density_per_cm2=100.0)
    (tmp_path / "scalp.jpg").write_bytes(encode_jpeg(scalp.rgb, 90))
    (tmp_path / "truth.png").write_bytes(encode_png(scalp.mask))
    args = ["--mask", str(tmp_path / "truth.png"), "--mm-per-pixel", "0.05", "-o", str(tmp_path)]
    result = run_cli("plan", str(tmp_path / "scalp.jpg"), *args, "--procedure", "smp-thinning")
    assert result.returncode == 0, result.stderr
    plan = json.loads((tmp_path / "scalp.plan.json").read_text())
    density = plan["procedure"]["smp_density"]
    assert abs(density["dot_density"]["value"] / scalp.truth["density_per_cm2"] - 1) <= 0.10
    assert "strands" in density["method"] and density["region_area"]["unit"] == "cm2"
