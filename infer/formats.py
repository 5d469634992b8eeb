"""Exchange formats derived from a plan: GeoJSON outlines, COCO instances, a palette mask PNG.

COCO is written for people who correct the masks in CVAT or Label Studio and for our own COCO
reader: one annotation per patch whose segmentation is the patch's exact pixels as compressed
RLE (column-major, as pycocotools writes it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer.geometry import Region
from dermaseg.infer.rescale import to_photo_mask
from dermaseg.infer.schema import Patch, Plan, Polygon

PIXEL_COORDINATES = (
    "pixel coordinates of the upright photo, x right, y down; pixel centres at integer x, y "
    "(the top-left pixel covers -0.5..0.5); not geographic"
)


# ---- GeoJSON ---------------------------------------------------------------------------------


def _ring(points: list[tuple[float, float]], exterior: bool) -> list[list[float]]:
    """A closed ring; exteriors have positive shoelace area in (x, y), holes negative."""
    ring = [[float(x), float(y)] for x, y in points]
    if ring and ring[0] != ring[-1]:
        ring.append(list(ring[0]))
    xy = np.asarray(ring, np.float64).reshape(-1, 2)
    signed = float(np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1]))
    return ring[::-1] if (signed > 0) != exterior and signed != 0 else ring


def _geometry(polygon: Polygon) -> dict:
    rings = [_ring(polygon.exterior, True)] + [_ring(h, False) for h in polygon.holes]
    return {"type": "Polygon", "coordinates": rings}


def _patch_feature(patch: Patch) -> dict:
    tone = patch.tone.model_dump(mode="json") if patch.tone is not None else None
    return {
        "type": "Feature",
        "id": f"patch-{patch.id}",
        "geometry": _geometry(patch.polygon),
        "properties": {
            "kind": "patch",
            "id": patch.id,
            "class_id": patch.class_id,
            "class": patch.class_name,
            "treatable": patch.treatable,
            "area_px": patch.area_px,
            "area_mm2": patch.area_mm2,
            "perimeter_px": patch.perimeter_px,
            "perimeter_mm": patch.perimeter_mm,
            "bbox": list(patch.bbox),
            "centroid": list(patch.centroid),
            "mean_confidence": patch.mean_confidence,
            "tone": tone,
        },
    }


def to_geojson(plan: Plan) -> dict:
    """A FeatureCollection: a Polygon per patch, then one per treatable outline (with margin)."""
    treatable = plan.treatable
    outlines = [
        {
            "type": "Feature",
            "id": f"treatable-{i}",
            "geometry": _geometry(polygon),
            "properties": {
                "kind": "treatable",
                "index": i,
                "margin_mm": treatable.margin_mm,
                "margin_px": treatable.margin_px,
            },
        }
        for i, polygon in enumerate(treatable.outline, start=1)
    ]
    return {
        "type": "FeatureCollection",
        "properties": {
            "coordinates": PIXEL_COORDINATES,
            "photo": plan.photo.name,
            "width": plan.photo.width,
            "height": plan.photo.height,
            "mm_per_pixel": plan.calibration.mm_per_pixel,
            "plan_schema_version": plan.schema_version,
        },
        "features": [_patch_feature(p) for p in plan.patches] + outlines,
    }


# ---- COCO RLE --------------------------------------------------------------------------------


def compress_counts(counts: list[int]) -> str:
    """pycocotools' compressed RLE string of run lengths (its `rleToString`)."""
    out = bytearray()
    for i, count in enumerate(counts):
        value = count - counts[i - 2] if i > 2 else count
        more = True
        while more:
            chunk = value & 0x1F
            value >>= 5
            more = value != -1 if chunk & 0x10 else value != 0
            out.append((chunk | (0x20 if more else 0)) + 48)
    return out.decode("ascii")


def encode_rle(
    binary: np.ndarray,
    origin: tuple[int, int] = (0, 0),
    size: tuple[int, int] | None = None,
) -> dict:
    """COCO compressed RLE {size: [h, w], counts: str} of a binary mask, as pycocotools encodes it.

    `binary` may be a crop placed at `origin` (x, y) of a larger all-zero frame of `size`
    (height, width); the RLE is of the whole frame.
    """
    crop_h, crop_w = binary.shape
    height, width = size if size is not None else (crop_h, crop_w)
    x0, y0 = origin
    if x0 < 0 or y0 < 0 or x0 + crop_w > width or y0 + crop_h > height:
        raise ValueError(f"a {crop_w}x{crop_h} crop at {origin} leaves a {width}x{height} frame")
    columns = np.zeros((crop_w, crop_h + 2), np.int8)
    columns[:, 1:-1] = binary.T != 0
    cols, rows = np.nonzero(np.diff(columns, axis=1))
    edges = (x0 + cols).astype(np.int64) * height + y0 + rows
    # a run that ends at the bottom of one column and goes on at the top of the next is one run
    values, seen = np.unique(edges, return_counts=True)
    edges = values[(seen == 1) & (values < height * width)]
    runs = np.diff(np.concatenate(([0], edges, [height * width])))
    return {"size": [int(height), int(width)], "counts": compress_counts(runs.tolist())}


# ---- COCO instances --------------------------------------------------------------------------


def to_coco(plan: Plan, regions: Sequence[Region], taxonomy: Taxonomy) -> dict:
    """A COCO instances file for the photo: one RLE annotation per patch, categories from the
    taxonomy without the background; `score` is the patch's mean confidence (1.0 for a mask).

    `regions` are those the plan's patches were made from (`planner.plan_from_mask`; patch `i`
    is `regions[i - 1]`), in the pixels of the photo as analysed: each is written at the
    photo's own size, its pixels repeated `plan.photo.analysis_scale` times along each side.
    Raises ValueError when a region is not its patch (class, bbox or area)."""
    height, width = plan.photo.height, plan.photo.width
    r = plan.photo.analysis_scale
    if len(regions) != len(plan.patches):
        raise ValueError(f"{len(regions)} regions for the plan's {len(plan.patches)} patches")
    annotations = []
    for patch, region in zip(plan.patches, regions, strict=True):
        bbox = tuple(v * r for v in region.bbox)
        if (region.class_id, bbox, region.area_px * r * r) != (
            patch.class_id,
            tuple(patch.bbox),
            patch.area_px,
        ):
            raise ValueError(
                f"patch {patch.id} ({patch.class_name}, bbox {list(patch.bbox)}, "
                f"{patch.area_px} px) is not the region given for it"
            )
        pixels = to_photo_mask(region.pixels, r)
        annotations.append(
            {
                "id": patch.id,
                "image_id": 1,
                "category_id": patch.class_id,
                "segmentation": encode_rle(pixels, bbox[:2], (height, width)),
                "area": patch.area_px,
                "bbox": [float(v) for v in patch.bbox],
                "iscrowd": 0,
                "score": patch.mean_confidence if patch.mean_confidence is not None else 1.0,
            }
        )
    return {
        "info": {
            "description": f"dermaseg plan of {plan.photo.name}",
            "version": plan.dermaseg_version,
            "contributor": f"dermaseg ({plan.source.kind} {plan.source.name})",
        },
        "licenses": [],
        "images": [{"id": 1, "file_name": plan.photo.name, "width": width, "height": height}],
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": "lesion"} for c in taxonomy.classes[1:]
        ],
        "annotations": annotations,
    }


# ---- palette PNG -----------------------------------------------------------------------------


def palette_mask_png(mask: np.ndarray, taxonomy: Taxonomy) -> bytes:
    """The class-id mask as a palette PNG: pixel values are class ids, shown in class colours."""
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"need a uint8 [H, W] class-id mask, got {mask.dtype} {mask.shape}")
    if mask.size and int(mask.max()) >= taxonomy.num_classes:
        raise ValueError(f"mask value {int(mask.max())} is not a class id of the taxonomy")
    return encode_png(mask, palette=taxonomy.palette, compress_level=1)
