"""Safe image loading, used everywhere: photos become upright RGB uint8, masks keep raw values.

Every failure raises `InputError` whose message names the file and the problem in one line.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from dermaseg.errors import InputError
from dermaseg.fileio import read_user_file

DEFAULT_MAX_PIXELS = 120_000_000  # above any phone camera in use (108 MP); guards against bombs
EXIF_ORIENTATION_TAG = 0x0112
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
# Decoded formats accepted, whatever the suffix; Pillow is never asked to try another plugin
# (EPS would go to Ghostscript). A JPEG with extra preview pictures opens as Pillow's "MPO".
PHOTO_FORMATS = ("JPEG", "PNG", "TIFF", "WEBP", "BMP")
FORMATS_TEXT = "JPEG, PNG, TIFF, WebP or BMP"
MAX_IMAGE_BYTES = 1024 * 1024 * 1024  # a 120-MP 16-bit RGB TIFF is 720 MB


@dataclass(frozen=True)
class DecodedImage:
    """Pixels plus what the file said about them."""

    pixels: np.ndarray  # RGB uint8 [H, W, 3] for photos; uint8 [H, W] for masks
    format: str  # PIL format name, e.g. "JPEG"
    mode: str  # PIL mode of the file, before conversion
    exif_orientation: int  # 1 = upright; 2..8 were applied to `pixels`
    stored_size: tuple[int, int]  # (width, height) as stored, before orientation
    frames: int  # >1 for multi-page files (only the first is used); MPO previews not counted


def read_file(path: str | Path) -> bytes:
    """Read a photo's or mask's bytes: a regular file under the size limit (a FIFO, a device
    or a sparse giant is refused before reading); every problem is a one-line `InputError`."""
    return read_user_file(path, max_bytes=MAX_IMAGE_BYTES)


def _open(data: bytes, name: str | Path, max_pixels: int) -> Image.Image:
    Image.init()  # registers every plugin (WebP, TIFF...), so `formats` can name them
    try:
        with warnings.catch_warnings():  # e.g. "Corrupt EXIF data": stderr noise, not an error
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data), formats=PHOTO_FORMATS)
    except UnidentifiedImageError:
        raise InputError(
            name, f"not a recognised image format (accepted: {FORMATS_TEXT})"
        ) from None
    except Image.DecompressionBombError as exc:
        raise InputError(name, f"refused: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(name, f"unreadable image header ({exc})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InputError(name, f"invalid image size {width}x{height}")
    if width * height > max_pixels:
        raise InputError(
            name,
            f"{width}x{height} = {width * height:,} pixels exceeds the limit of {max_pixels:,} "
            "(raise max_pixels if this is a genuine photo)",
        )
    return image


def _frames(image: Image.Image) -> int:
    """Pages or frames in the file; a JPEG's MPO preview pictures are not pages."""
    if image.format == "MPO":
        return 1
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except Exception:  # counting walks the file; a broken later page is not this page's fault
        return 2


def _load_pixels(image: Image.Image, name: str | Path) -> tuple[Image.Image, int]:
    """Decode the pixels, then read the EXIF orientation and apply it.

    The pixels are loaded first: reading a PNG's EXIF loads its pixels, and a failed load there
    would leave PIL with an empty image that a second load() accepts as all black.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image.load()
            orientation = _orientation(image)
            oriented = ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        raise InputError(name, f"truncated or corrupt image data ({exc})") from None
    return (oriented if oriented is not None else image), orientation


def _orientation(image: Image.Image) -> int:
    try:
        value = int(image.getexif().get(EXIF_ORIENTATION_TAG, 1))
    except Exception:  # a malformed EXIF block must not make the photo unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to RGB uint8; transparency is composited over white."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if mode.startswith("I") and values.max(initial=0) > 255 else 255.0
        gray = np.clip(values * (255.0 / peak) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image)


def exact_reduction(size: tuple[int, int], min_long_side: int) -> int:
    """The largest JPEG decode reduction (8, 4 or 2) that divides both sides exactly and keeps
    the longer side at least `min_long_side`; 1 when none does."""
    for factor in (8, 4, 2):
        if size[0] % factor == 0 and size[1] % factor == 0 and max(size) // factor >= min_long_side:
            return factor
    return 1


def decode_image(
    data: bytes,
    name: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce: int = 1,
    min_long_side: int = 0,
) -> DecodedImage:
    """Decode a photo to RGB uint8 in display orientation (EXIF applied).

    `reduce` (1, 2, 4 or 8) lets JPEG decode at a fraction of full size, which is much faster when
    the result will be downscaled anyway; other formats ignore it. `min_long_side` > 0 picks the
    largest exact reduction that keeps the longer side at least that long (`exact_reduction`).
    """
    image = _open(data, name, max_pixels)
    fmt, mode, stored = image.format or "unknown", image.mode, image.size
    frames = _frames(image)
    if min_long_side > 0:
        reduce = exact_reduction(stored, min_long_side)
    if reduce > 1 and fmt == "JPEG":
        image.draft("RGB", (max(1, stored[0] // reduce), max(1, stored[1] // reduce)))
    image, orientation = _load_pixels(image, name)
    pixels = np.ascontiguousarray(_to_rgb(image))
    return DecodedImage(pixels, fmt, mode, orientation, stored, frames)


def load_image(
    path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, reduce: int = 1
) -> np.ndarray:
    """Load a photo as RGB uint8 [H, W, 3], upright. Raises `InputError` naming the file."""
    return decode_image(read_file(path), path, max_pixels=max_pixels, reduce=reduce).pixels


def decode_mask(
    data: bytes, name: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DecodedImage:
    """Decode a label mask to its raw uint8 values [H, W].

    L and palette (P) images give their stored values (palette indices, not colours); 16-bit
    masks are accepted when every value fits in 0..255; an RGB mask is accepted only when its
    three channels are equal.
    """
    image = _open(data, name, max_pixels)
    fmt, mode, stored = image.format or "unknown", image.mode, image.size
    frames = _frames(image)
    image, orientation = _load_pixels(image, name)
    if image.mode in ("L", "P", "1"):
        values = np.asarray(image.convert("L") if image.mode == "1" else image)
    elif image.mode.startswith("I"):
        wide = np.asarray(image)
        if wide.size and (wide.min() < 0 or wide.max() > 255):
            raise InputError(
                name, f"16-bit mask has values up to {int(wide.max())}; masks need 0..255"
            )
        values = wide.astype(np.uint8)
    elif image.mode in ("RGB", "RGBA", "LA"):
        rgb = np.asarray(image.convert("RGB"))
        if not (
            np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
        ):
            raise InputError(
                name, f"{image.mode} colour mask; save masks as single-channel (L) or palette PNG"
            )
        values = rgb[..., 0]
    else:
        raise InputError(name, f"unsupported mask mode {image.mode}; use L or palette PNG")
    return DecodedImage(
        np.ascontiguousarray(values, dtype=np.uint8), fmt, mode, orientation, stored, frames
    )


def load_mask(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Load a label mask's raw values as uint8 [H, W]. Raises `InputError` naming the file."""
    return decode_mask(read_file(path), path, max_pixels=max_pixels).pixels


def encode_png(
    pixels: np.ndarray, palette: np.ndarray | None = None, compress_level: int = 6
) -> bytes:
    """PNG bytes of an RGB, RGBA or single-channel array (uint8 or uint16); with `palette`
    [C, 3], a palette PNG of uint8 class ids with as few bits per pixel as C colours need
    (2 bits for up to 4).

    `compress_level` 1 is the fast setting for the big images a plan writes: zlib level 1 with
    its run-length strategy, and for arrays one PNG filter (Up) on every row instead of libpng's
    per-row choice among all five; a 1008x756 overlay encodes about 3x faster than with libpng's
    defaults at level 1, into a smaller file. Arrays are encoded by OpenCV, palette PNGs by
    Pillow (OpenCV writes no palette PNG).
    """
    pixels = np.ascontiguousarray(pixels)
    fast = compress_level <= 1
    if palette is not None:
        if pixels.ndim != 2:
            raise ValueError("a palette PNG needs a single-channel array of class ids")
        image = Image.fromarray(pixels).convert("P")
        image.putpalette(np.asarray(palette, np.uint8).reshape(-1, 3).flatten().tolist())
        buffer = io.BytesIO()
        options = {"compress_type": zlib.Z_RLE} if fast else {}
        image.save(buffer, format="PNG", optimize=False, compress_level=compress_level, **options)
        return buffer.getvalue()
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    if pixels.ndim not in (2, 3) or channels not in (1, 3, 4):
        raise ValueError(f"cannot encode a {pixels.dtype} {pixels.shape} array as PNG")
    if channels in (3, 4):
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR if channels == 3 else cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_PNG_COMPRESSION, compress_level]
    if fast:
        params += [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
        params += [cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    done, encoded = cv2.imencode(".png", pixels, params)
    if not done:
        raise ValueError(f"cannot encode a {pixels.dtype} {pixels.shape} array as PNG")
    return encoded.tobytes()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB uint8 array, with no EXIF or other metadata."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
