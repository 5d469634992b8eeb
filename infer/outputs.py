"""Write one plan's files: JSON, GeoJSON, COCO, palette mask, overlay and HTML report."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dermaseg.datasets.images import encode_jpeg, encode_png
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import OutputExistsError
from dermaseg.fileio import write_bytes, write_json, write_text
from dermaseg.infer.formats import palette_mask_png, to_coco, to_geojson
from dermaseg.infer.overlay import render_overlay
from dermaseg.infer.report_html import render_report
from dermaseg.infer.schema import Plan

SUFFIXES = {
    "plan": ".plan.json",
    "geojson": ".geojson",
    "coco": ".coco.json",
    "mask": ".mask.png",
    "overlay": ".overlay.png",
    "report": ".html",
}


def output_paths(out_dir: Path, stem: str) -> dict[str, Path]:
    """Where each output of the photo named `stem` goes."""
    return {kind: out_dir / f"{stem}{suffix}" for kind, suffix in SUFFIXES.items()}


def check_free(paths: dict[str, Path], overwrite: bool) -> None:
    """Refuse before any work when an output exists and may not be replaced."""
    if overwrite:
        return
    for path in paths.values():
        if path.exists():
            raise OutputExistsError(path)


def write_outputs(
    paths: dict[str, Path],
    plan: Plan,
    analysed: Plan,
    rgb: np.ndarray,
    mask: np.ndarray,
    taxonomy: Taxonomy,
    overwrite: bool,
) -> None:
    """Render and write every output atomically; the plan JSON last, so it marks completion.

    `plan` is in the photo's pixels, `analysed` in those of `rgb` and `mask` (the photo decoded
    at 1/photo.analysis_scale). The overlay and report image stay at the analysed size; the mask
    PNG and the COCO masks are at the photo's size, so they line up with the photo in CVAT. The
    HTML report embeds the overlay as JPEG (a fraction of the PNG's size and encoding time).
    """
    scale = plan.photo.analysis_scale
    overlay = render_overlay(rgb, mask, analysed, taxonomy)
    full_mask = mask if scale == 1 else np.repeat(np.repeat(mask, scale, 0), scale, 1)
    write_bytes(paths["mask"], palette_mask_png(full_mask, taxonomy), overwrite=overwrite)
    write_bytes(paths["overlay"], encode_png(overlay, compress_level=1), overwrite=overwrite)
    write_json(paths["geojson"], to_geojson(plan), overwrite=overwrite)
    write_json(paths["coco"], to_coco(plan, full_mask, taxonomy), overwrite=overwrite)
    write_text(
        paths["report"],
        render_report(plan, encode_jpeg(overlay, 90), taxonomy),
        overwrite=overwrite,
    )
    write_json(paths["plan"], plan.model_dump(mode="json"), overwrite=overwrite)
