"""Colour measurement against the synthetic generator's truth, on JPEG-compressed photos.

The truth (`datasets/synth_truth.py`) is measured on the rendered pixels BEFORE JPEG; the functions
under test see the JPEG the clinic would get, with the true mask. Acceptance: every patch colour,
surround colour and the skin tone within 2 ΔE76 of the truth.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dermaseg.datasets.images import decode_image, encode_jpeg
from dermaseg.datasets.synth import generate_photo, photo_size
from dermaseg.datasets.synth_render import render
from dermaseg.datasets.synth_scene import SCAR, THINNING, VITILIGO, sample_scene
from dermaseg.infer import calibration, tone

MAX_DELTA_E = 2.0
SKIN_SEEDS = (0, 1, 2, 3, 4, 5)
# Scalp photos whose hair is at least 10 L* darker than the skin (checked in the test): the first
# such seeds. Light or skin-toned hair is a known limit, see infer/tone.py.
SCALP_SEEDS = (0, 1, 2, 3, 5, 6, 10)


def jpeg_photo(seed: int, size: int, kind: str):
    photo = generate_photo(seed, size, True, kind=kind)
    data = encode_jpeg(photo.rgb, photo.entry["jpeg_quality"])
    return decode_image(data, "photo.jpg").pixels, photo


def measure(rgb: np.ndarray, mask: np.ndarray):
    """Patch tones and skin tone the way a plan measures them, from the photo and its mask."""
    found = calibration.detect_marker(rgb)
    marker = calibration.marker_polygon_mask(found, mask.shape)
    if marker is None:
        marker = np.zeros(mask.shape, bool)
    not_skin = (mask == VITILIGO) | (mask == SCAR)
    dark = tone.hair_is_dark(rgb, bare_hint=mask == THINNING)
    hair = tone.find_hair(rgb, dark, ignore=not_skin | marker)
    excluded = marker | hair.mask
    lesion = mask > 0
    ring = tone.ring_px(mask.shape)
    patches = []
    for class_id in (VITILIGO, SCAR, THINNING):  # the manifest's order: by class, then component
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (mask == class_id).astype(np.uint8), connectivity=8
        )
        for k in range(1, count):
            x, y, w, h, _ = (int(v) for v in stats[k])
            region = labels[y : y + h, x : x + w] == k
            patches.append(tone.patch_tone(rgb, region, (x, y, w, h), lesion, excluded, ring, hair))
    skin = tone.skin_tone(rgb, not_skin, excluded, hair=hair)
    return patches, skin


def check_against_truth(rgb, photo):
    truth = photo.entry
    patches, skin = measure(rgb, photo.mask)
    assert len(patches) == len(truth["patches"])
    worst = 0.0
    for measured, expected in zip(patches, truth["patches"], strict=True):
        assert measured.patch.pixels == expected["area_px"]
        error = tone.delta_e76(measured.patch.lab, expected["lab"])
        assert error <= MAX_DELTA_E, (expected["class"], expected["area_px"], error)
        worst = max(worst, error)
        if expected["surround_lab"] is None:
            assert measured.surround is None or measured.surround.pixels < 50
            continue
        assert measured.surround is not None
        error = tone.delta_e76(measured.surround.lab, expected["surround_lab"])
        assert error <= MAX_DELTA_E, ("surround", expected["class"], error)
        worst = max(worst, error)
        assert measured.delta_e76 == pytest.approx(
            tone.delta_e76(measured.patch.lab, measured.surround.lab), abs=0.01
        )
    assert skin is not None
    error = tone.delta_e76(skin.lab, truth["skin_lab"])
    assert error <= MAX_DELTA_E, ("skin", error)
    return max(worst, error)


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("seed", SKIN_SEEDS)
def test_skin_photo_colours_match_the_truth(seed, size):
    rgb, photo = jpeg_photo(seed, size, "skin")
    check_against_truth(rgb, photo)


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("seed", SCALP_SEEDS)
def test_dark_haired_scalp_colours_match_the_truth(seed, size):
    rgb, photo = jpeg_photo(seed, size, "scalp")
    assert photo.entry["hair_lab"][0] <= photo.entry["skin_lab"][0] - 10.0  # the seeds' premise
    check_against_truth(rgb, photo)


def test_jpeg_needs_the_chroma_correction():
    """Without hair unmixing, JPEG's half-resolution chroma drags a scalp surround off the truth."""
    rgb, photo = jpeg_photo(25, 256, "scalp")
    mask = photo.mask
    hair = tone.find_hair(rgb, True)
    (x, y, w, h) = photo.entry["patches"][0]["bbox"]
    _, labels = cv2.connectedComponents((mask == THINNING).astype(np.uint8), connectivity=8)
    region = labels[y : y + h, x : x + w] == 1
    args = (rgb, region, (x, y, w, h), mask > 0, hair.mask, (5.0, 20.0))
    truth = photo.entry["patches"][0]["surround_lab"]
    plain = tone.patch_tone(*args).surround
    unmixed = tone.patch_tone(*args, hair=hair).surround
    assert tone.delta_e76(plain.lab, truth) > MAX_DELTA_E
    assert tone.delta_e76(unmixed.lab, truth) <= MAX_DELTA_E
    assert plain.lab[0] == unmixed.lab[0]  # L* is full resolution in JPEG: left alone


def rendered_hair(seed: int, size: int):
    """Re-render a scalp photo as generate_photo does, to get the true strand coverage."""
    photo = generate_photo(seed, size, True, kind="scalp")
    width, height = photo_size(size)
    rng = np.random.default_rng(seed)
    rng.random()  # generate_photo's draw of the kind
    rendering = render(rng, sample_scene(rng, width, height, "scalp", True))
    assert np.array_equal(rendering.rgb, photo.rgb)
    data = encode_jpeg(photo.rgb, photo.entry["jpeg_quality"])
    return decode_image(data, "photo.jpg").pixels, photo, rendering


@pytest.mark.parametrize(("seed", "size"), [(1, 256), (2, 512), (5, 512), (10, 256)])
def test_hair_mask_finds_the_rendered_strands(seed, size):
    rgb, photo, rendering = rendered_hair(seed, size)
    dark = tone.hair_is_dark(rgb, photo.mask == THINNING)
    assert dark
    mask = tone.hair_mask(rgb, dark)
    strands = rendering.hair_alpha >= 0.5
    bare = (rendering.hair_alpha == 0) & (rendering.marker_alpha == 0)
    assert mask[strands].mean() >= 0.8  # recall of strand pixels
    assert mask[bare].mean() <= 0.25  # untouched skin taken for hair
    # partial coverage: found strands cover more than the ones left
    found = rendering.hair_alpha[mask].mean()
    assert found > 2 * rendering.hair_alpha[~mask & (rendering.marker_alpha == 0)].mean()


@pytest.mark.parametrize("seed", [4, 13])
def test_light_hair_is_told_apart_by_a_thinning_region(seed):
    rgb, photo = jpeg_photo(seed, 512, "scalp")
    assert photo.entry["hair_lab"][0] > photo.entry["skin_lab"][0]  # grey / blond hair
    assert not tone.hair_is_dark(rgb, photo.mask == THINNING)


def test_ita_formula_and_categories():
    assert tone.ita_deg((60.0, 5.0, 10.0)) == pytest.approx(45.0)
    assert tone.ita_deg((50.0, 0.0, 15.0)) == pytest.approx(0.0)
    lab = (70.0, 10.0, 17.0)
    assert tone.ita_deg(lab) == pytest.approx(math.degrees(math.atan((70.0 - 50.0) / 17.0)))
    assert tone.ita_deg((40.0, 0.0, 0.0)) == pytest.approx(-90.0)
    cases = {
        60.0: "very light",
        55.0: "light",
        41.0: "intermediate",
        30.0: "intermediate",
        28.0: "tan",
        10.0: "brown",
        -29.9: "brown",
        -30.0: "dark",
        -60.0: "dark",
    }
    for ita, name in cases.items():
        assert tone.ita_category(ita) == name, ita


def test_colour_helpers():
    assert tone.lab_to_hex((100.0, 0.0, 0.0)) == "#ffffff"
    assert tone.lab_to_hex((0.0, 0.0, 0.0)) == "#000000"
    assert tone.lab_to_hex((50.0, 200.0, 0.0)).startswith("#")  # out of gamut: clipped
    rgb = np.array([[[196, 150, 128]]], np.uint8)
    assert tone.lab_to_hex(tone.lab_of(rgb)[0, 0]) == "#c49680"
    assert tone.delta_e76((50, 0, 0), (53, 4, 0)) == pytest.approx(5.0)
    lab = tone.lab_of(np.full((4, 4, 3), 255, np.uint8))
    assert lab[..., 0] == pytest.approx(100.0, abs=0.01)
    where = np.zeros((4, 4), bool)
    assert tone.tone_of(lab, where) is None
    where[:2] = True
    found = tone.tone_of(lab, where, min_pixels=8)
    assert found.pixels == 8 and found.hex == "#ffffff" and found.ita_category == "very light"
    assert tone.tone_of(lab, where, min_pixels=9) is None


def test_ring_scales_with_the_photo():
    assert tone.ring_px((512, 512)) == (5.0, 20.0)
    assert tone.ring_px((300, 256, 3)) == (5.0, 20.0)
    short = 3024 / 512
    assert tone.ring_px((3024, 4032, 3)) == pytest.approx((5.0 * short, 20.0 * short))


def test_patch_tone_ring_and_arguments():
    rgb = np.zeros((60, 60, 3), np.uint8)
    rgb[:] = (200, 160, 140)
    rgb[25:35, 25:35] = (250, 240, 235)
    lesion = np.zeros((60, 60), bool)
    lesion[25:35, 25:35] = True
    region = np.ones((10, 10), bool)
    nothing = np.zeros((60, 60), bool)
    result = tone.patch_tone(rgb, region, (25, 25, 10, 10), lesion, nothing, (5.0, 20.0))
    skin = tone.lab_of(rgb[:1, :1])[0, 0]
    pale = tone.lab_of(rgb[30:31, 30:31])[0, 0]
    assert result.patch.pixels == 100
    assert tone.delta_e76(result.patch.lab, pale) < 0.01
    assert tone.delta_e76(result.surround.lab, skin) < 0.01
    assert result.delta_e76 == pytest.approx(tone.delta_e76(pale, skin), abs=0.01)
    assert result.ring_px == (5.0, 20.0)
    # every ring pixel excluded: no surround
    result = tone.patch_tone(rgb, region, (25, 25, 10, 10), lesion, ~lesion, (5.0, 20.0))
    assert result.surround is None and result.delta_e76 is None
    with pytest.raises(ValueError, match="bbox"):
        tone.patch_tone(rgb, region, (25, 25, 9, 10), lesion, nothing, (5.0, 20.0))


def test_skin_tone_stride_and_exclusions():
    rgb, photo = jpeg_photo(2, 512, "skin")
    not_skin = photo.mask > 0
    nothing = np.zeros(not_skin.shape, bool)
    full = tone.skin_tone(rgb, not_skin, nothing)
    sampled = tone.skin_tone(rgb, not_skin, nothing, stride=3, band_rows=64)
    assert tone.delta_e76(full.lab, sampled.lab) < 0.5
    assert full.pixels == int((~not_skin).sum())
    assert tone.skin_tone(rgb, not_skin, ~nothing) is None


def test_lab_of_no_pixels_is_empty() -> None:
    empty = np.zeros((0, 3), np.uint8)
    assert tone.lab_of(empty).shape == (0, 3)
    assert tone.lab_of(np.zeros((4, 0, 3), np.uint8)).shape == (4, 0, 3)


def test_skin_distance_is_the_mahalanobis_distance() -> None:
    """The OpenCV form (whitened by the Cholesky factor) equals (x - m)^T C^-1 (x - m)."""
    from dermaseg.infer.skin_model import SkinModel

    covariance = np.array([[40.0, 5, 3], [5, 20, 2], [3, 2, 30]])
    model = SkinModel(np.array([60.0, 15, 20]), covariance, 1000, 5.0)
    lab = np.random.default_rng(0).normal(50, 20, (7, 9, 3))
    diff = lab.reshape(-1, 3) - model.mean
    expected = ((diff @ np.linalg.inv(covariance)) * diff).sum(axis=1).reshape(7, 9)
    assert np.allclose(model.distance2(lab), expected, rtol=1e-5, atol=1e-4)
    assert model.distance2(lab[0, 0]).shape == () and model.distance2(lab[:0]).shape == (0, 9)
    assert model.is_skin(model.mean[None]).all()
