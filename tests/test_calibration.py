"""Marker calibration on real (synthetic, JPEG-compressed) photos and on drawn test cards."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dermaseg.datasets.images import decode_image, encode_jpeg
from dermaseg.datasets.synth import generate_photo
from dermaseg.infer import calibration, schema
from dermaseg.infer import warning_codes as codes


def jpeg_photo(seed: int, size: int, with_marker: bool = True, kind: str | None = None):
    """A synthetic photo as the clinic gets it: JPEG at the manifest's quality, decoded again."""
    photo = generate_photo(seed, size, with_marker, kind=kind)
    data = encode_jpeg(photo.rgb, photo.entry["jpeg_quality"])
    return decode_image(data, "photo.jpg").pixels, photo


def card(size: int = 400, marker_px: int = 120, ids=(7,), skin=(196, 150, 128)) -> np.ndarray:
    """A skin-coloured RGB card with white-bordered DICT_4X4_50 markers, left to right."""
    canvas = np.zeros((size, size * len(ids), 3), np.uint8)
    canvas[:] = skin
    dictionary = cv2.aruco.getPredefinedDictionary(cv2.aruco.DICT_4X4_50)
    for k, marker_id in enumerate(ids):
        side = marker_px if k == 0 else marker_px // 2
        image = cv2.aruco.generateImageMarker(dictionary, marker_id, side)
        sticker = np.pad(image, side // 2, constant_values=255)
        top = (size - sticker.shape[0]) // 2
        left = k * size + (size - sticker.shape[1]) // 2
        canvas[top : top + sticker.shape[0], left : left + sticker.shape[1]] = sticker[..., None]
    return canvas


@pytest.mark.parametrize("size", [256, 512])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_marker_gives_the_true_scale_and_corners(seed, size):
    rgb, photo = jpeg_photo(seed, size)
    truth = photo.entry
    found = calibration.detect_marker(rgb)
    assert found.method == "marker"
    assert found.marker is not None and found.marker.id == 7
    assert found.mm_per_pixel == pytest.approx(truth["mm_per_pixel"], rel=0.01)
    expected = np.asarray(truth["marker"]["corners_px"])  # both: pixel centres at integers
    assert np.abs(np.asarray(found.marker.corners_px) - expected).max() < 0.5
    assert not any(w.code == "marker-tilted" for w in found.warnings)
    sides = found.marker.side_lengths_px
    assert max(sides) / min(sides) < 1.03


@pytest.mark.parametrize("kind", ["skin", "scalp"])
def test_no_marker_means_no_scale(kind):
    rgb, _ = jpeg_photo(11, 512, with_marker=False, kind=kind)
    found = calibration.detect_marker(rgb)
    assert found.method == "none"
    assert found.mm_per_pixel is None and found.marker is None
    assert [w.code for w in found.warnings] == ["no-marker"]
    assert "DICT_4X4_50" in found.warnings[0].text


def test_tilted_marker_is_measured_and_warned_about():
    flat = card()
    height, width = flat.shape[:2]
    # keep the left edge, squeeze the right edge to 65 %: a marker seen at an angle
    source = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    squeeze = 0.175 * height
    target = np.float32([[0, 0], [width, squeeze], [width, height - squeeze], [0, height]])
    warped = cv2.warpPerspective(
        flat,
        cv2.getPerspectiveTransform(source, target),
        (width, height),
        borderValue=(196, 150, 128),
    )
    found = calibration.detect_marker(warped)
    assert found.method == "marker"
    sides = np.asarray(found.marker.side_lengths_px)
    assert sides.max() / sides.min() > 1.15
    assert any(w.code == "marker-tilted" for w in found.warnings)
    # the same card seen square-on carries no warning, and its side is the drawn 120 px
    upright = calibration.detect_marker(flat)
    assert upright.warnings == []
    assert np.asarray(upright.marker.side_lengths_px) == pytest.approx(120.0, abs=0.3)
    assert upright.mm_per_pixel == pytest.approx(20.0 / 120.0, rel=0.003)


def test_several_markers_pick_the_requested_or_the_largest():
    rgb = card(ids=(7, 3))
    largest = calibration.detect_marker(rgb)
    assert largest.marker.id == 7
    assert largest.mm_per_pixel == pytest.approx(20.0 / 120.0, rel=0.01)
    assert any("2 ArUco markers" in w.text and "used id 7" in w.text for w in largest.warnings)
    chosen = calibration.detect_marker(rgb, marker_id=3)
    assert chosen.marker.id == 3
    assert chosen.mm_per_pixel == pytest.approx(20.0 / 60.0, rel=0.01)
    missing = calibration.detect_marker(rgb, marker_id=9)
    assert missing.method == "none" and "id 9" in missing.warnings[0].text


def test_side_and_dictionary_are_honoured():
    rgb = card()
    assert calibration.detect_marker(rgb, side_mm=30.0).mm_per_pixel == pytest.approx(
        30.0 / 120.0, rel=0.003
    )
    # a DICT_4X4_50 marker is not a 6x6 one
    other = calibration.detect_marker(rgb, dictionary="DICT_6X6_250")
    assert other.method == "none"
    assert "DICT_6X6_250" in other.warnings[0].text


def test_unknown_dictionary_lists_the_valid_names():
    with pytest.raises(ValueError, match="DICT_4X4_50") as error:
        calibration.detect_marker(card(), dictionary="DICT_9X9_1")
    assert "DICT_9X9_1" in str(error.value)


def test_large_photo_is_detected_on_a_small_copy_and_refined_at_full_size():
    # a 12-MP card: detection runs at <= 1600 px, corners come back at full resolution
    rgb = cv2.resize(card(), (3024, 3024), interpolation=cv2.INTER_CUBIC)
    rgb = np.pad(rgb, ((0, 0), (504, 504), (0, 0)), mode="edge")
    found = calibration.detect_marker(rgb)
    assert found.method == "marker"
    assert found.mm_per_pixel == pytest.approx(20.0 / (120.0 * 3024 / 400), rel=0.003)


def test_manual_and_uncalibrated():
    manual = calibration.manual_calibration(0.1)
    assert (manual.method, manual.mm_per_pixel, manual.warnings) == ("manual", 0.1, [])
    none = calibration.uncalibrated(codes.warning("no-marker", dictionary="why"))
    assert (none.method, none.mm_per_pixel) == ("none", None)
    assert [w.code for w in none.warnings] == ["no-marker"]
    assert [w.code for w in calibration.uncalibrated().warnings] == ["uncalibrated"]
    with pytest.raises(ValueError):
        calibration.manual_calibration(0.0)
    # the models validate: a round trip through JSON keeps everything
    assert schema.Calibration.model_validate_json(manual.model_dump_json()) == manual


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marker_polygon_mask_covers_the_sticker(seed):
    rgb, photo = jpeg_photo(seed, 512)
    found = calibration.detect_marker(rgb)
    mask = calibration.marker_polygon_mask(found, rgb.shape[:2])
    assert mask is not None and mask.dtype == bool and mask.shape == rgb.shape[:2]
    # the synthetic sticker: black square plus 3 white cells on every side = twice the square
    corners = np.asarray(photo.entry["marker"]["corners_px"])
    centre = corners.mean(axis=0)
    sticker = np.zeros(rgb.shape[:2], np.uint8)
    outline = np.round((centre + 2.0 * (corners - centre)) * 16).astype(np.int32)
    cv2.fillPoly(sticker, [outline], 1, cv2.LINE_8, 4)
    assert not (sticker.astype(bool) & ~mask).any()
    assert mask.sum() < 1.4 * sticker.sum()
    # no marker, no mask; a pad of 0 is the black square alone
    assert calibration.marker_polygon_mask(calibration.uncalibrated(), rgb.shape[:2], 5) is None
    square = calibration.marker_polygon_mask(found, rgb.shape[:2], pad_px=0)
    side = np.mean(found.marker.side_lengths_px)
    assert square.sum() == pytest.approx(side**2, rel=0.05)
