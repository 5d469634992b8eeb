"""Builders of hostile and odd input files, shared by the hostile-input and crash-safety tests.

Every builder writes real files into a folder; nothing here runs dermaseg.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer import contract

RNG_SEED = 11
NON_UTF8_NAME = os.fsdecode(b"caf\xe9-\xff.png")  # a Latin-1 file name, not valid UTF-8


def smooth_rgb(height: int, width: int, seed: int = RNG_SEED) -> np.ndarray:
    """A smooth random photo (compresses like a real one; JPEG keeps it close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(2, height // 8), max(2, width // 8), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def encoded(array: np.ndarray, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` and that holds no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b"")


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose SOF0 frame header is patched to claim `width` x `height`."""
    data = bytearray(encoded(smooth_rgb(16, 16), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def pickle_that_touches(marker: Path) -> bytes:
    """A pickle that creates `marker` when unpickled (proof that something unpickled it)."""

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    return pickle.dumps(Touch())


def torch_zip_that_touches(marker: Path) -> bytes:
    """The same payload in torch.save's zip layout (`archive/data.pkl`)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_that_touches(marker))
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# ---- photos ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoCase:
    """A photo file; `error` is a fragment of its one-line error, or None when it is valid.

    `size` is the upright (width, height) a valid photo must decode to. `in_dataset` is False for
    files a dataset listing does not pick up (a folder, a .gif suffix). `plan_error`: the
    photo loads, but `plan` refuses it with this fragment (e.g. several pages: which to plan?).
    """

    name: str
    write: Callable[[Path], None]
    error: str | None = None
    size: tuple[int, int] | None = None
    in_dataset: bool = True
    plan_error: str | None = None

    @property
    def planned_error(self) -> str | None:
        return self.error or self.plan_error


def _bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_idat(data: bytes) -> bytes:
    start = data.index(b"IDAT") + 4  # the zlib header of the pixel data
    return data[:start] + bytes([data[start] ^ 0xFF]) + data[start + 1 :]


def _array_file(array: np.ndarray, **kwargs: object) -> Callable[[Path], None]:
    return lambda path: Image.fromarray(array).save(path, **kwargs)


def _pil(image: Image.Image, **kwargs: object) -> Callable[[Path], None]:
    return lambda path: image.save(path, **kwargs)


def _cv2(array: np.ndarray) -> Callable[[Path], None]:
    return lambda path: cv2.imwrite(str(path), array)


def _symlink(target: str) -> Callable[[Path], None]:
    return lambda path: os.symlink(target, path)


def _frames(suffix: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frames = [Image.fromarray(smooth_rgb(40, 48, seed)) for seed in (1, 2, 3)]
        frames[0].save(path, save_all=True, append_images=frames[1:])

    return write


def _exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 48x40, displayed rotated 90 degrees: 40x48
    Image.fromarray(smooth_rgb(40, 48)).save(path, exif=exif, quality=92)


def _palette_transparency(path: Path) -> None:
    image = Image.fromarray(smooth_rgb(40, 48)).convert("P", palette=Image.ADAPTIVE, colors=16)
    image.save(path, transparency=0)


def _fifo(path: Path) -> None:
    os.mkfifo(path)  # opening it for reading would wait forever for a writer


def _sparse(size: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("wb") as handle:
            handle.truncate(size)  # no blocks on disk; reading it all would need `size` bytes

    return write


def _eps(path: Path) -> None:
    """An Encapsulated PostScript file (Pillow would hand it to Ghostscript) named .jpg."""
    buffer = io.BytesIO()
    Image.fromarray(smooth_rgb(40, 48)).save(buffer, format="EPS")
    path.write_bytes(buffer.getvalue())


def _mutual_loop(path: Path) -> None:
    other = path.with_name("loop-b.lnk")  # not a photo suffix: not listed
    os.symlink(other.name, path)
    os.symlink(path.name, other)


def photo_cases() -> list[PhotoCase]:
    """Bad photos (each must fail alone, in one line) and odd valid ones (must be planned)."""
    rgb = smooth_rgb(40, 48)
    jpeg, png = encoded(rgb, "JPEG", quality=90), encoded(rgb, "PNG")
    big_png = encoded(smooth_rgb(200, 200), "PNG")
    tiff, webp = encoded(rgb, "TIFF"), encoded(rgb, "WEBP")
    gray16 = (np.arange(40 * 48, dtype=np.uint32).reshape(40, 48) * 30).astype(np.uint16)
    rgb16 = np.stack([gray16, gray16 // 2, gray16 // 3], axis=2)
    unreadable = "not a recognised image format"
    corrupt = "truncated or corrupt"
    return [
        PhotoCase("zero-bytes.jpg", _bytes(b""), "empty file (0 bytes)"),
        PhotoCase("truncated-jpg.jpg", _bytes(_half(jpeg)), "unreadable image header"),
        PhotoCase("truncated-png.png", _bytes(_half(big_png)), corrupt),
        PhotoCase("truncated-tif.tif", _bytes(_half(tiff)), corrupt),
        PhotoCase("truncated-webp.webp", _bytes(_half(webp)), "unreadable image header"),
        PhotoCase("jpeg-soi-only.jpg", _bytes(b"\xff\xd8\xff"), unreadable),
        PhotoCase("png-signature-only.png", _bytes(png[:8]), unreadable),
        PhotoCase("tiff-header-only.tif", _bytes(b"II*\x00\x08\x00\x00\x00"), unreadable),
        PhotoCase("bad-zlib.png", _bytes(_flip_idat(big_png)), corrupt),
        PhotoCase("text.jpg", _bytes(b"hello, not a photo\n"), unreadable),
        PhotoCase("html.jpg", _bytes(b"<!doctype html><html><body>404</body></html>"), unreadable),
        PhotoCase("svg.png", _bytes(b'<svg xmlns="http://www.w3.org/2000/svg"/>'), unreadable),
        PhotoCase("pdf.png", _bytes(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"), "a PDF file;"),
        PhotoCase("nul-bytes.jpg", _bytes(bytes(4096)), unreadable),
        PhotoCase("zip.jpg", _bytes(torch_zip_that_touches(Path("/nonexistent/x"))), unreadable),
        PhotoCase("huge-header-png.png", _bytes(png_header_only(200_000, 200_000)), "exceeds"),
        PhotoCase("huge-header-jpg.jpg", _bytes(jpeg_claiming(60_000, 60_000)), "exceeds"),
        PhotoCase("zero-size-header.png", _bytes(png_header_only(0, 0)), unreadable),
        PhotoCase("symlink-self-loop.jpg", _symlink("symlink-self-loop.jpg"), "cannot read"),
        PhotoCase("loop-a.jpg", _mutual_loop, "cannot read"),
        PhotoCase("dangling.jpg", _symlink("does-not-exist.jpg"), "file not found"),
        PhotoCase("folder.jpg", lambda p: p.mkdir(), "is a directory", in_dataset=False),
        PhotoCase("fifo.jpg", _fifo, "not a regular file (a named pipe)"),
        PhotoCase("dev-zero.jpg", _symlink("/dev/zero"), "not a regular file (a character"),
        PhotoCase("sparse-6gb.jpg", _sparse(6 << 30), "exceeds the limit"),
        PhotoCase("eps.jpg", _eps, "a PostScript or EPS file; photos must be JPEG, PNG"),
        PhotoCase("gif-named.png", _bytes(encoded(rgb, "GIF")), "a GIF file;"),
        PhotoCase("heic.jpg", _bytes(b"\x00\x00\x00\x18ftypheic" + bytes(64)), "a HEIC/HEIF file;"),
        PhotoCase("forged\nerror: x.jpg: planned.jpg", _bytes(b"junk"), unreadable),
        # valid, odd photos: decoded and planned, never rejected
        PhotoCase("one-by-one.png", _array_file(rgb[:1, :1]), size=(1, 1)),
        PhotoCase("one-by-many.png", _array_file(smooth_rgb(1, 300)), size=(300, 1)),
        PhotoCase("gray16.png", _cv2(gray16), size=(48, 40)),
        PhotoCase("rgb48.png", _cv2(rgb16), size=(48, 40)),
        PhotoCase("cmyk-jpg.jpg", _pil(Image.fromarray(rgb).convert("CMYK")), size=(48, 40)),
        PhotoCase("cmyk-tif.tif", _pil(Image.fromarray(rgb).convert("CMYK")), size=(48, 40)),
        PhotoCase("palette-transparency.png", _palette_transparency, size=(48, 40)),
        PhotoCase("gray-alpha.png", _pil(Image.fromarray(rgb).convert("LA")), size=(48, 40)),
        PhotoCase("bilevel.png", _pil(Image.fromarray(rgb).convert("1")), size=(48, 40)),
        PhotoCase("float.tif", _pil(Image.fromarray(rgb).convert("F")), size=(48, 40)),
        PhotoCase("animated.gif", _frames(".gif"), "a GIF file;", in_dataset=False),
        PhotoCase("multipage.tif", _frames(".tif"), size=(48, 40), plan_error="3 pages or frames"),
        PhotoCase("exif-rotated.jpg", _exif_rotated, size=(40, 48)),
        PhotoCase("photo-webp.webp", _bytes(webp), size=(48, 40)),
        PhotoCase("photo-bmp.bmp", _pil(Image.fromarray(rgb)), size=(48, 40)),
        PhotoCase(NON_UTF8_NAME, _bytes(png), size=(48, 40)),
    ]


# ---- masks (for a valid 48x40 photo) ---------------------------------------------------------


@dataclass(frozen=True)
class MaskCase:
    """A mask file for a valid 48x40 photo (`photo` writes that photo) and its error fragment."""

    name: str
    write: Callable[[Path], None]
    error: str
    photo: Callable[[Path], None] = lambda path: Image.fromarray(smooth_rgb(40, 48)).save(path)


def _mask(height: int = 40, width: int = 48, value: int = 1) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[5:20, 5:30] = value
    return mask


def mask_cases() -> list[MaskCase]:
    wide = _mask().astype(np.uint16) * 300
    return [
        MaskCase("mask-wrong-size", _array_file(_mask(20, 20)), "mask is 20x20"),
        MaskCase("mask-unknown-value", _array_file(_mask(value=9)), "9"),
        MaskCase("mask-colour", _array_file(smooth_rgb(40, 48)), "colour mask"),
        MaskCase("mask-16bit-300", _cv2(wide), "values up to 300"),
        MaskCase("mask-zero-bytes", _bytes(b""), "empty file (0 bytes)"),
        MaskCase("mask-text", _bytes(b"not a mask"), "not a recognised image format"),
        MaskCase(
            "mask-truncated",
            _bytes(_half(encoded(smooth_rgb(40, 48)[..., 0], "PNG"))),
            "truncated or corrupt",
        ),
        MaskCase("mask-symlink-loop", _symlink("mask-symlink-loop.png"), "cannot read"),
        MaskCase("mask-fifo", _fifo, "not a regular file (a named pipe)"),
        MaskCase(
            "mask-before-exif-rotation",
            _array_file(_mask()),
            "mask is 48x40",
            photo=_exif_rotated,
        ),
    ]


def write_mask(path: Path, width: int, height: int) -> Path:
    """A valid class mask (values 0..3) for a photo of that upright size."""
    mask = np.zeros((height, width), np.uint8)
    mask[: max(1, height // 2), : max(1, width // 2)] = 1
    if width > 2 and height > 2:
        mask[-1, -1] = 2
    Image.fromarray(mask).save(path)
    return path


# ---- ONNX models -------------------------------------------------------------------------------


def fake_planning_model(
    path: Path,
    *,
    image_type: int | None = None,
    metadata: dict[str, str] | None = None,
    drop_output: str | None = None,
    custom_domain: bool = False,
    raw_mask: bool = False,
) -> Path:
    """A hand-built ONNX that honours the planning contract's names and types (mask = R > 127).

    The keyword arguments break it in one way each, for the hostile-input corpus (`raw_mask`:
    loads and runs, but its mask holds values that are not class ids).
    """
    from onnx import TensorProto, helper, save

    classes = DEFAULT_TAXONOMY.num_classes
    uint8 = TensorProto.UINT8
    image_input = helper.make_tensor_value_info(
        "image", uint8 if image_type is None else image_type, ["N", "H", "W", 3]
    )
    nodes = [
        helper.make_node("Constant", [], ["zero"], value_ints=[0]),
        helper.make_node("Constant", [], ["one"], value_ints=[1]),
        helper.make_node("Constant", [], ["axis"], value_ints=[3]),
        helper.make_node("Slice", ["image", "zero", "one", "axis"], ["red4"]),
        helper.make_node("Squeeze", ["red4", "axis"], ["red"]),
        helper.make_node("Constant", [], ["half"], value=helper.make_tensor("h", uint8, [], [127])),
        helper.make_node("Greater", ["red", "half"], ["bright"]),
        helper.make_node("Cast", ["bright"], ["mask"], to=uint8),
        helper.make_node("Identity", ["mask"], ["confidence"]),
        helper.make_node("Identity", ["mask"], ["boundary"]),
        helper.make_node(
            "Constant",
            [],
            ["area_px"],
            value=helper.make_tensor("a", TensorProto.INT64, [1, classes], [0] * classes),
        ),
        helper.make_node(
            "Constant",
            [],
            ["area_mm2"],
            value=helper.make_tensor("m", TensorProto.FLOAT, [1, classes], [0.0] * classes),
        ),
    ]
    if raw_mask:  # mask = the red channel itself: values up to 255, not class ids
        nodes[7] = helper.make_node("Identity", ["red"], ["mask"])
    if image_type is not None:  # keep the graph valid for a non-uint8 image
        nodes[5] = helper.make_node(
            "Constant", [], ["half"], value=helper.make_tensor("h", image_type, [], [127])
        )
    if custom_domain:
        nodes.append(helper.make_node("Exfiltrate", ["mask"], ["stolen"], domain="evil.ops"))
    outputs = [
        helper.make_tensor_value_info("mask", uint8, ["N", "H", "W"]),
        helper.make_tensor_value_info("confidence", uint8, ["N", "H", "W"]),
        helper.make_tensor_value_info("boundary", uint8, ["N", "H", "W"]),
        helper.make_tensor_value_info("area_px", TensorProto.INT64, [1, classes]),
        helper.make_tensor_value_info("area_mm2", TensorProto.FLOAT, [1, classes]),
    ]
    outputs = [o for o in outputs if o.name != drop_output]
    if custom_domain:
        outputs.append(helper.make_tensor_value_info("stolen", uint8, None))
    graph = helper.make_graph(
        nodes,
        "fake_planning_model",
        [image_input, helper.make_tensor_value_info("mm_per_pixel", TensorProto.FLOAT, ["N"])],
        outputs,
    )
    opsets = [helper.make_opsetid("", 18)]
    if custom_domain:
        opsets.append(helper.make_opsetid("evil.ops", 1))
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    props = {
        contract.KEY_CONTRACT: contract.CONTRACT_VERSION,
        contract.KEY_CLASSES: json.dumps([c.model_dump() for c in DEFAULT_TAXONOMY.classes]),
        contract.KEY_WORKING_SIZE: "96",
        **(metadata or {}),
    }
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    save(model, str(path))
    return path


def onnx_reading_outside(path: Path, location: str) -> Path:
    """An ONNX whose one initializer is external data at `location` (outside its folder)."""
    from onnx import TensorProto, helper, save

    tensor = helper.make_tensor("w", TensorProto.UINT8, [4], [0, 0, 0, 0])
    tensor.ClearField("int32_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "4")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Identity", ["w"], ["y"])],
        "reads_outside",
        [],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [4])],
        initializer=[tensor],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    save(model, str(path))
    return path
