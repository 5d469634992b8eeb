"""Safe image loading: any mode or format becomes upright RGB uint8; bad files fail in one line."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from dermaseg.datasets.images import decode_image, load_image, load_mask
from dermaseg.errors import InputError
from tests.conftest import write_image

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def _error(path: Path, **kwargs) -> str:
    with pytest.raises(InputError) as info:
        load_image(path, **kwargs)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    ("suffix", "mode"),
    [
        (".png", "RGB"),
        (".png", "L"),
        (".png", "LA"),
        (".png", "RGBA"),
        (".png", "P"),
        (".jpg", "CMYK"),
        (".tif", "CMYK"),
        (".tif", "RGB"),
        (".webp", "RGB"),
        (".bmp", "RGB"),
        (".png", "1"),
    ],
)
def test_modes_become_rgb_uint8(tmp_path: Path, suffix: str, mode: str) -> None:
    path = tmp_path / f"photo{suffix}"
    Image.fromarray(RGB).convert(mode).save(path)
    image = load_image(path)
    assert image.dtype == np.uint8 and image.shape == (30, 40, 3)


def test_rgb_png_is_lossless(tmp_path: Path) -> None:
    assert np.array_equal(load_image(write_image(tmp_path / "a.png", RGB)), RGB)


def test_transparency_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent
    image = load_image(write_image(tmp_path / "a.png", rgba))
    assert image[0, 0].tolist() == [200, 0, 0]
    assert image[3, 0].tolist() == [255, 255, 255]


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette_image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="L").convert("P")
    palette_image.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    palette_image.info["transparency"] = 0
    path = tmp_path / "p.png"
    palette_image.save(path, transparency=0)
    image = load_image(path)
    assert image[0, 0].tolist() == [255, 255, 255] and image[0, 1].tolist() == [40, 50, 60]


def test_sixteen_bit_png_scales_to_eight_bit(tmp_path: Path) -> None:
    gray16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g.png"), gray16)
    rgb16 = np.stack([gray16, gray16 // 2, gray16 // 4], axis=2)
    cv2.imwrite(str(tmp_path / "c.png"), rgb16[..., ::-1])
    gray = load_image(tmp_path / "g.png")
    assert gray.dtype == np.uint8 and np.abs(gray[..., 0].astype(int) - gray16 / 257).max() <= 1
    color = load_image(tmp_path / "c.png")
    assert np.abs(color.astype(int) - (rgb16 >> 8)).max() <= 1


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    path = tmp_path / "rot.jpg"
    smooth = cv2.resize(RGB[:3, :4], (40, 30), interpolation=cv2.INTER_LINEAR)
    Image.fromarray(smooth).save(path, exif=exif, quality=95)
    decoded = decode_image(path.read_bytes(), path)
    assert decoded.exif_orientation == 6 and decoded.stored_size == (40, 30)
    assert decoded.pixels.shape == (40, 30, 3)
    upright = np.rot90(smooth, k=-1).astype(int)
    assert np.abs(decoded.pixels.astype(int) - upright).mean() < 4
    assert np.abs(decoded.pixels.astype(int) - np.rot90(smooth, k=1)).mean() > 8


def test_reduced_jpeg_decode(tmp_path: Path) -> None:
    big = cv2.resize(RGB, (400, 300))
    path = write_image(tmp_path / "big.jpg", big)
    assert load_image(path, reduce=4).shape == (75, 100, 3)
    assert load_image(path).shape == (300, 400, 3)


def test_multi_page_tiff_reports_its_pages(tmp_path: Path) -> None:
    """The loader decodes the first page and says how many there are (callers warn or
    refuse); GIF is not a photo format and is refused whatever its frames."""
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.tif", save_all=True, append_images=frames[1:])
    decoded = decode_image((tmp_path / "a.tif").read_bytes(), "a.tif")
    assert decoded.frames == 2 and abs(int(decoded.pixels.mean()) - 10) <= 2
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    with pytest.raises(InputError, match="a GIF file; photos must be JPEG, PNG, TIFF"):
        decode_image((tmp_path / "a.gif").read_bytes(), "a.gif")


def test_pixel_limit(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", RGB)
    assert "exceeds the limit of 1,000" in _error(path, max_pixels=1000)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_header_claiming_huge_dimensions(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 200_000, 200_000, 8, 2, 0, 0, 0)
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IEND", b"")
    path = tmp_path / "bomb.png"
    path.write_bytes(png)
    message = _error(path)
    assert "200000x200000" in message or "exceeds" in message or "refused" in message


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_truncated_files(tmp_path: Path, suffix: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(RNG.integers(0, 256, (200, 200, 3), dtype=np.uint8)).save(
        buffer, format="JPEG" if suffix == ".jpg" else "PNG"
    )
    path = tmp_path / f"cut{suffix}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    assert "truncated or corrupt" in _error(path)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"hello, not a photo", "not a recognised image format"),
        (b"<html><body>404</body></html>", "not a recognised image format"),
    ],
)
def test_not_images(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "photo.jpg"
    path.write_bytes(content)
    assert expected in _error(path)


def test_missing_directory_and_symlink_loop(tmp_path: Path) -> None:
    assert "file not found" in _error(tmp_path / "nope.jpg")
    assert "is a directory" in _error(tmp_path)
    loop = tmp_path / "loop.jpg"
    os.symlink(loop, loop)
    assert "cannot read" in _error(loop)


def test_masks_keep_raw_values(tmp_path: Path) -> None:
    values = np.array([[0, 1, 2], [3, 255, 0]], np.uint8)
    assert np.array_equal(load_mask(write_image(tmp_path / "l.png", values)), values)
    palette = Image.fromarray(values, mode="L").convert("P")
    palette.putpalette([v % 256 for v in range(768)])
    palette.save(tmp_path / "p.png")
    assert np.array_equal(load_mask(tmp_path / "p.png"), values)
    gray_rgb = np.repeat(values[:, :, None], 3, axis=2)
    assert np.array_equal(load_mask(write_image(tmp_path / "g.png", gray_rgb)), values)


def test_colour_and_wide_masks_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="colour mask"):
        load_mask(write_image(tmp_path / "c.png", RGB))
    wide = np.array([[0, 300]], np.uint16)
    cv2.imwrite(str(tmp_path / "w.png"), wide)
    with pytest.raises(InputError, match="values up to 300"):
        load_mask(tmp_path / "w.png")
