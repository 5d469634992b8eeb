"""A plan made on a photo decoded at 1/r of its size, expressed in the photo's own pixels."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.calibration import manual_calibration
from dermaseg.infer.planner import PlanSettings, plan_from_mask
from dermaseg.infer.rescale import analysed_geometry, analysed_photo
from dermaseg.infer.schema import PhotoInfo, Plan, SourceInfo
from tests.conftest import run_cli


def _plan(rgb: np.ndarray, mask: np.ndarray, mm_per_pixel: float, photo: PhotoInfo) -> Plan:
    return plan_from_mask(
        rgb,
        mask,
        None,
        photo=photo,
        source=SourceInfo(kind="mask", name="m.png", sha256="0" * 64),
        calibration=manual_calibration(mm_per_pixel),
        taxonomy=DEFAULT_TAXONOMY,
        settings=PlanSettings(tone=False, margin_mm=1.0, simplify_px=0.0, min_patch_area_mm2=0.5),
    ).plan


def _full_photo(r: int) -> PhotoInfo:
    """The record of a 160r x 120r photo analysed at 160 x 120."""
    return PhotoInfo(
        name="p.jpg",
        sha256="0" * 64,
        width=160 * r,
        height=120 * r,
        exif_orientation=1,
        analysis_scale=r,
    )


@pytest.mark.parametrize("r", [2, 4])
def test_rescaled_plan_equals_the_plan_of_the_upscaled_mask(r: int) -> None:
    small = generate_photo(31, (160, 120))
    small.mask[2, 2:4] = 2  # a speck: 2 px under the 0.5 mm² minimum (12.5 px)
    big_mask = np.repeat(np.repeat(small.mask, r, 0), r, 1)
    big_rgb = np.repeat(np.repeat(small.rgb, r, 0), r, 1)
    full = _full_photo(r)
    rescaled = _plan(small.rgb, small.mask, 0.2, full)  # planned at 1/r, written in photo px
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


def _without_time(plan: Plan) -> dict:
    return plan.model_dump(mode="json", exclude={"created"})


@pytest.mark.parametrize("r", [2, 4])
def test_the_overlay_draws_exactly_the_plan_made_in_the_analysed_pixels(r: int) -> None:
    """The plan changes frame once (`plan_from_mask`); the overlay maps it back onto the photo
    as analysed, exactly: the same plan as one made and kept in the analysed pixels."""
    small = generate_photo(5, (160, 120))
    full = _full_photo(r)
    written = _plan(small.rgb, small.mask, 0.2, full)
    in_analysed = _plan(small.rgb, small.mask, 0.2, analysed_photo(full))
    assert written.patches and written.treatable.outline
    assert written.treatable.area_px == in_analysed.treatable.area_px * r * r
    assert _without_time(analysed_geometry(written)) == _without_time(in_analysed)


def test_written_coco_is_each_patch_of_the_written_mask(tiny_model: Path, tmp_path: Path) -> None:
    """COCO masks come from the regions found while planning, at the photo's size: each decodes
    to one 8-connected component of its class in NAME.mask.png, with the patch's bbox and area."""
    photo = tmp_path / "big.jpg"
    rgb = generate_photo(3, (1024, 768)).rgb
    Image.fromarray(rgb).resize((2048, 1536), Image.BILINEAR).save(photo, quality=92)
    out = tmp_path / "out"
    result = run_cli("plan", str(photo), "--model", str(tiny_model), "-o", str(out))
    assert result.returncode == 0, result.stderr
    plan = Plan.model_validate_json((out / "big.plan.json").read_text())
    assert plan.photo.analysis_scale == 2 and plan.patches
    mask = np.asarray(Image.open(out / "big.mask.png"))
    coco = json.loads((out / "big.coco.json").read_text())
    assert len(coco["annotations"]) == len(plan.patches)
    for patch, annotation in zip(plan.patches, coco["annotations"], strict=True):
        rle = annotation["segmentation"]
        pixels = coco_mask.decode({"size": rle["size"], "counts": rle["counts"].encode()}) > 0
        x, y, w, h = patch.bbox
        assert int(pixels.sum()) == patch.area_px == annotation["area"]
        assert pixels[y : y + h, x : x + w].sum() == patch.area_px  # all inside the bbox
        assert np.all(mask[pixels] == patch.class_id)
        _, labels = cv2.connectedComponents(
            (mask[y : y + h, x : x + w] == patch.class_id).view(np.uint8), connectivity=8
        )
        ids = np.unique(labels[pixels[y : y + h, x : x + w]])
        assert len(ids) == 1 and np.array_equal(labels == ids[0], pixels[y : y + h, x : x + w])
