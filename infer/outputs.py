"""Write one plan's files: JSON, GeoJSON, COCO, palette mask, overlay (and its thumbnail for the
index page), the photo as analysed and the HTML report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dermaseg.datasets.images import encode_jpeg, encode_png, load_image
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import InputError, OutputExistsError
from dermaseg.fileio import commit_files, json_text, read_user_file
from dermaseg.infer.analysis import MadePlan
from dermaseg.infer.formats import palette_mask_png, to_coco, to_geojson
from dermaseg.infer.overlay import render_overlay
from dermaseg.infer.report_html import render_report
from dermaseg.infer.rescale import to_photo_mask

SUFFIXES = {
    "plan": ".plan.json",
    "geojson": ".geojson",
    "coco": ".coco.json",
    "mask": ".mask.png",
    "overlay": ".overlay.png",
    "report": ".html",
    "photo": ".photo.jpg",
    "thumb": ".thumb.jpg",
}
CORRECTED_MASK = ".corrected.png"  # a person's correction (review desk), beside the model's mask
INDEX = "index.html"  # the run's own page in --out, beside the photos' outputs
PHOTO_JPEG_QUALITY = 95
THUMBNAIL_PX = 160  # the longer side of the index page's thumbnails
MAX_THUMBNAIL_BYTES = 1 << 20
JPEG_MAGIC = b"\xff\xd8\xff"


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """Where each output of the photo named `stem` goes."""
    return {kind: out_dir / f"{stem}{suffix}" for kind, suffix in SUFFIXES.items()}


def corrected_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """The outputs of a corrected plan: the same files, but the mask goes beside the model's."""
    return {**output_paths(out_dir, stem), "mask": out_dir / f"{stem}{CORRECTED_MASK}"}


def thumbnail_jpeg(rgb: np.ndarray, size: int = THUMBNAIL_PX) -> bytes:
    """A small JPEG of an RGB image, its longer side `size` px."""
    height, width = rgb.shape[:2]
    factor = size / max(height, width)
    small = (max(1, round(width * factor)), max(1, round(height * factor)))
    return encode_jpeg(cv2.resize(rgb, small, interpolation=cv2.INTER_AREA), 80)


def index_thumbnail(out_dir: Path, stem: str, size: int = THUMBNAIL_PX) -> bytes | None:
    """A small JPEG of the photo's overlay for the index page, or None when there is none:
    `NAME.thumb.jpg` as the plan wrote it (encoded once, not again on every index), else made
    from `NAME.overlay.png` (plans from before thumbnails were written, or another size)."""
    paths = output_paths(out_dir, stem)
    thumb = paths["thumb"]
    if size == THUMBNAIL_PX and thumb.is_file() and not thumb.is_symlink():
        try:
            data = read_user_file(thumb, max_bytes=MAX_THUMBNAIL_BYTES)
        except InputError:
            data = b""
        if data.startswith(JPEG_MAGIC):
            return data
    path = paths["overlay"]
    if not path.is_file() or path.is_symlink():
        return None
    return thumbnail_jpeg(load_image(path), size)


def check_free(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work when the photo's plan is already there and may not be replaced.

    The plan JSON is written last and marks a complete set: other files without it are what a
    run that died half way left, and are replaced.
    """
    if not overwrite and paths["plan"].exists():
        raise OutputExistsError(paths["plan"])


def check_none_exist(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work when any of several separate outputs (not a committed set: a
    ranking, a comparison) exists and may not be replaced."""
    for path in paths.values():
        if not overwrite and path.exists():
            raise OutputExistsError(path)


def write_outputs(
    paths: dict[str, Path],
    made: MadePlan,
    taxonomy: Taxonomy,
    overwrite: bool,
    *,
    photo_jpeg: bytes | None = None,
    lap: Callable[[str], None] = lambda stage: None,
) -> None:
    """Render every output, then commit them as a unit (`fileio.commit_files`): all or none,
    the plan JSON last, so it marks a complete set.

    The plan is written as it is (photo pixels): JSON, GeoJSON, report. The writers of pixels
    apply the photo's analysis scale r here, once: the mask PNG and the COCO masks are the
    analysed mask and regions at the photo's size (so they line up with the photo in CVAT);
    the overlay is drawn on the photo as analysed (`overlay.render_overlay`). The HTML report
    embeds the overlay as JPEG (a fraction of the PNG's size and encoding time).
    `NAME.photo.jpg` is the photo as analysed (upright, no EXIF): the report shows it and the
    review desk edits over it; `photo_jpeg` gives its bytes when they are already written.
    `NAME.thumb.jpg` is the overlay's thumbnail for the index page. Each image is encoded once.
    `lap` is called after each step (for timing): "outputs.overlay" (the photo's JPEG, the
    overlay drawn, its PNG, JPEG and thumbnail), "outputs.mask", "outputs.coco",
    "outputs.report" (with the JSONs) and "outputs.write".
    """
    plan, analysis = made.plan, made.analysis
    files: dict[Path, bytes] = {}
    if photo_jpeg is None:
        photo_jpeg = encode_jpeg(analysis.rgb, PHOTO_JPEG_QUALITY)
        files[paths["photo"]] = photo_jpeg
    overlay = render_overlay(analysis.rgb, analysis.mask, plan, taxonomy)
    overlay_png, overlay_jpeg = encode_png(overlay, compress_level=1), encode_jpeg(overlay, 90)
    files[paths["thumb"]] = thumbnail_jpeg(overlay)
    lap("outputs.overlay")
    full_mask = to_photo_mask(analysis.mask, analysis.scale)
    files[paths["mask"]] = palette_mask_png(full_mask, taxonomy)
    lap("outputs.mask")
    coco = json_text(to_coco(plan, made.regions, taxonomy)).encode()
    lap("outputs.coco")
    files |= {
        paths["overlay"]: overlay_png,
        paths["geojson"]: json_text(to_geojson(plan)).encode(),
        paths["coco"]: coco,
        paths["report"]: render_report(plan, overlay_jpeg, taxonomy, photo=photo_jpeg).encode(
            "utf-8", "replace"
        ),
        paths["plan"]: json_text(plan.model_dump(mode="json")).encode(),
    }
    lap("outputs.report")
    commit_files(files, overwrite=overwrite)
    lap("outputs.write")
