"""A plan made on a photo decoded at 1/r of its size, expressed in the photo's own pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.calibration import manual_calibration
from dermaseg.infer.planner import PlanSettings, build_plan
from dermaseg.infer.rescale import analysed_photo, to_photo_pixels
from dermaseg.infer.schema import PhotoInfo, Plan, SourceInfo
from tests.conftest import run_cli


def _plan(rgb: np.ndarray, mask: np.ndarray, mm_per_pixel: float, photo: PhotoInfo) -> Plan:
    return build_plan(
        rgb,
        mask,
        None,
        photo=photo,
        source=SourceInfo(kind="mask", name="m.png", sha256="0" * 64),
        calibration=manual_calibration(mm_per_pixel),
        taxonomy=DEFAULT_TAXONOMY,
        settings=PlanSettings(tone=False, margin_mm=1.0, simplify_px=0.0, min_patch_area_mm2=0.5),
    )


@pytest.mark.parametrize("r", [2, 4])
def test_rescaled_plan_equals_the_plan_of_the_upscaled_mask(r: int) -> None:
    small = generate_photo(31, (160, 120))
    small.mask[2, 2:4] = 2  # a speck: 2 px under the 0.5 mm² minimum (12.5 px)
    big_mask = np.repeat(np.repeat(small.mask, r, 0), r, 1)
    big_rgb = np.repeat(np.repeat(small.rgb, r, 0), r, 1)
    full = PhotoInfo(
        name="p.jpg",
        sha256="0" * 64,
        width=160 * r,
        height=120 * r,
        exif_orientation=1,
        analysis_scale=r,
    )
    rescaled = to_photo_pixels(
        _plan(small.rgb, small.mask, 0.2, analysed_photo(full, 160, 120)), full
    )
    direct = _plan(big_rgb, big_mask, 0.2 / r, full.model_copy(update={"analysis_scale": 1}))
    assert rescaled.calibration.mm_per_pixel == pytest.approx(direct.calibration.mm_per_pixel)
    assert [c.area_px for c in rescaled.classes] == [c.area_px for c in direct.classes]
    specks = [(c.speck_count, c.speck_area_px) for c in rescaled.classes]
    assert specks == [(c.speck_count, c.speck_area_px) for c in direct.classes]
    assert rescaled.decisions == direct.decisions and specks[2] == (1, 2 * r * r)
    assert [c.area_mm2 for c in rescaled.classes] == pytest.approx(
        [c.area_mm2 for c in direct.classes]
    )
    assert len(rescaled.patches) == len(direct.patches)
    for a, b in zip(rescaled.patches, direct.patches, strict=True):
        assert (a.bbox, a.area_px) == (b.bbox, b.area_px)
        assert a.centroid == pytest.approx(b.centroid)
        area = cv2.contourArea(np.float32(a.polygon.exterior))
        assert area == pytest.approx(cv2.contourArea(np.float32(b.polygon.exterior)), rel=0.05)
    assert rescaled.treatable.margin_px == pytest.approx(direct.treatable.margin_px)


def test_large_jpeg_is_analysed_reduced_with_outputs_at_photo_size(
    tiny_model: Path, tmp_path: Path
) -> None:
    photo = tmp_path / "big.jpg"
    rgb = generate_photo(8, (1000, 800)).rgb
    Image.fromarray(rgb).resize((2000, 1600), Image.BILINEAR).save(photo, quality=92)
    runs = {}
    for name, extra in (("reduced", []), ("full", ["--full-resolution"])):
        result = run_cli(
            "plan",
            str(photo),
            "--model",
            str(tiny_model),
            "-o",
            str(tmp_path / name),
            "--mm-per-pixel",
            "0.05",
            *extra,
        )
        assert result.returncode == 0, result.stderr
        runs[name] = Plan.model_validate_json((tmp_path / name / "big.plan.json").read_text())
    reduced, full = runs["reduced"], runs["full"]
    assert (reduced.photo.analysis_scale, full.photo.analysis_scale) == (2, 1)
    assert (reduced.photo.width, reduced.photo.height) == (2000, 1600)
    assert sum(c.area_px for c in reduced.classes) == 2000 * 1600
    assert reduced.calibration.mm_per_pixel == pytest.approx(0.05)
    mask = np.asarray(Image.open(tmp_path / "reduced" / "big.mask.png"))
    assert mask.shape == (1600, 2000)
    coco = json.loads((tmp_path / "reduced" / "big.coco.json").read_text())
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (2000, 1600)
    for patch in reduced.patches:
        x, y, w, h = patch.bbox
        assert x + w <= 2000 and y + h <= 1600
