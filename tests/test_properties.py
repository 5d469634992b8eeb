"""Property-based tests (hypothesis) of plan geometry and report invariants on random masks.

`build_plan` runs directly on random class masks and small random photos, with tone on and off,
calibrated or not, with and without a margin, a minimum patch size and a confidence map.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.fileio import json_text
from dermaseg.infer.calibration import manual_calibration, uncalibrated
from dermaseg.infer.planner import PlanSettings, plan_from_mask
from dermaseg.infer.schema import PhotoInfo, Plan, Polygon, SourceInfo

CLASSES = DEFAULT_TAXONOMY.num_classes
SOURCE = SourceInfo(kind="mask", name="m.png", sha256="0" * 64)
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def masks(draw: st.DrawFn) -> np.ndarray:
    """Random uint8 class masks 1..48 px a side: noise, blobs or stripes of classes 0..3."""
    height, width = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["noise", "blobs", "stripes"]))
    if kind == "noise":
        weights = rng.dirichlet(np.ones(CLASSES))
        return rng.choice(CLASSES, size=(height, width), p=weights).astype(np.uint8)
    if kind == "stripes":
        return (
            np.indices((height, width)).sum(axis=0) // draw(st.integers(1, 5)) % CLASSES
        ).astype(np.uint8)
    field = cv2.GaussianBlur(rng.random((height, width)).astype(np.float32), (0, 0), 2)
    edges = np.quantile(field, sorted(rng.uniform(0.2, 1.0, CLASSES - 1)))
    return np.digitize(field, edges).astype(np.uint8)


@st.composite
def cases(draw: st.DrawFn) -> tuple:
    mask = draw(masks())
    height, width = mask.shape
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rgb = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    confidence = (
        rng.integers(0, 256, size=mask.shape, dtype=np.uint8) if draw(st.booleans()) else None
    )
    scale = draw(st.one_of(st.none(), st.floats(0.01, 2.0)))
    plan_settings = PlanSettings(
        min_patch_area_mm2=draw(st.sampled_from([0.0, 0.5, 5.0])),
        min_patch_area_px=draw(st.integers(0, 30)),
        margin_mm=draw(st.sampled_from([0.0, 0.3, 2.0])),
        simplify_px=draw(st.sampled_from([0.0, 0.5, 1.0, 3.0])),
        tone=draw(st.booleans()),
    )
    return rgb, mask, confidence, scale, plan_settings


def ring_area(ring: list[tuple[float, float]]) -> float:
    return cv2.contourArea(np.array(ring, np.float32))


def assert_valid_polygon(polygon: Polygon, width: int, height: int) -> None:
    """Rings of >= 3 distinct points with positive area, inside the photo's pixel edges."""
    for ring in [polygon.exterior, *polygon.holes]:
        assert len(set(ring)) >= 3, ring
        assert ring_area(ring) > 0, ring
        points = np.array(ring)
        assert points[:, 0].min() >= -0.5 and points[:, 0].max() <= width - 0.5
        assert points[:, 1].min() >= -0.5 and points[:, 1].max() <= height - 0.5


def plan_of(rgb, mask, confidence, scale, plan_settings) -> Plan:
    height, width = mask.shape
    photo = PhotoInfo(name="p.png", sha256="0" * 64, width=width, height=height, exif_orientation=1)
    return plan_from_mask(
        rgb,
        mask,
        confidence,
        photo=photo,
        source=SOURCE,
        calibration=uncalibrated() if scale is None else manual_calibration(scale),
        taxonomy=DEFAULT_TAXONOMY,
        settings=plan_settings,
    ).plan


@PROPERTY_SETTINGS
@given(cases())
def test_areas_are_non_negative_and_sum_to_the_totals(case) -> None:
    _, mask, _, scale, _ = case
    plan = plan_of(*case)
    height, width = mask.shape
    counts = np.bincount(mask.ravel(), minlength=CLASSES)
    assert [c.area_px for c in plan.classes] == counts.tolist()
    assert sum(c.area_px for c in plan.classes) == height * width
    for total in plan.classes:
        patches = [p for p in plan.patches if p.class_id == total.class_id]
        assert total.area_px >= 0
        if total.class_id > 0:
            # every pixel is in a patch or a speck (a component under the minimum)
            assert sum(p.area_px for p in patches) + total.speck_area_px == total.area_px
            assert total.patch_count == len(patches)
            assert all(p.area_px >= plan.treatable.min_patch_area_px for p in patches)
        if scale is not None:
            assert np.isclose(total.area_mm2, total.area_px * scale**2)
        else:
            assert total.area_mm2 is None
    treatable = plan.treatable
    kept = [p for p in plan.patches if p.treatable]
    assert treatable.patch_count == len(kept)
    assert treatable.patch_area_px == sum(p.area_px for p in kept)
    assert treatable.patch_area_px <= treatable.area_px <= height * width
    if treatable.margin_px == 0:
        assert treatable.area_px == treatable.patch_area_px
    for patch in plan.patches:
        assert patch.area_px >= 1 and patch.perimeter_px > 0
        is_treatable_class = DEFAULT_TAXONOMY.classes[patch.class_id].treatable
        assert patch.treatable == (
            is_treatable_class and patch.area_px >= treatable.min_patch_area_px
        )


@PROPERTY_SETTINGS
@given(cases())
def test_polygons_boxes_and_centroids_are_valid(case) -> None:
    _, mask, confidence, _, _ = case
    plan = plan_of(*case)
    height, width = mask.shape
    for patch in plan.patches:
        x, y, w, h = patch.bbox
        assert x >= 0 and y >= 0 and w >= 1 and h >= 1 and x + w <= width and y + h <= height
        assert x - 0.5 <= patch.centroid[0] <= x + w - 0.5
        assert y - 0.5 <= patch.centroid[1] <= y + h - 0.5
        assert_valid_polygon(patch.polygon, width, height)
        assert (patch.mean_confidence is None) == (confidence is None)
    for polygon in plan.treatable.outline:
        assert_valid_polygon(polygon, width, height)
    assert (len(plan.treatable.outline) > 0) == (plan.treatable.area_px > 0)


@PROPERTY_SETTINGS
@given(cases())
def test_plan_json_is_valid_against_the_schema(case) -> None:
    *_, plan_settings = case
    plan = plan_of(*case)
    text = json_text(plan.model_dump(mode="json"))
    json.loads(text)  # strict JSON: no NaN or Infinity
    assert Plan.model_validate_json(text) == plan
    if not plan_settings.tone:
        assert plan.skin_tone is None and all(p.tone is None for p in plan.patches)
    else:
        for patch in plan.patches:
            assert patch.tone is not None
            for tone in (patch.tone.patch, patch.tone.surround):
                assert tone is None or (0 <= tone.lab[0] <= 100 and tone.pixels >= 0)
