"""Regions, margins and outlines of class masks, for the plan report.

Coordinates are [x, y] floats with pixel centres at integer coordinates (OpenCV's convention):
pixel (x, y) is the square x - 0.5 .. x + 0.5, y - 0.5 .. y + 0.5.

Polygon vertices lie on pixel CORNERS (half-integers) and edge midpoints, and the unsimplified
polygon encloses its pixels' squares: a single pixel is its unit square, a 1 x N run its rectangle.
Each concave corner of the component (holes' corners included) is bevelled across the background by
a half-pixel diagonal (8-connected tracing), adding 1/8 px² there. Contours are traced with
cv2.findContours on the component drawn at double resolution, then simplified with
cv2.approxPolyDP ring by ring (so a hole may come to touch its exterior); a ring that simplification
would leave with under 3 points or no area is kept unsimplified, so every ring has >= 3 distinct
points and a positive area.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.infer import schema

_CELL = np.ones((3, 3), np.uint8)  # a pixel at double resolution: centre, 4 edges, 4 corners


@dataclass(frozen=True)
class Region:
    """One 8-connected component of one class."""

    class_id: int
    bbox: tuple[int, int, int, int]  # x, y, w, h (px)
    pixels: np.ndarray  # bool [h, w]: the component inside its bbox
    area_px: int  # pixel count
    centroid: tuple[float, float]  # x, y: mean of the pixel centres
    perimeter_px: float  # length of the polygon's closed rings (exterior + holes), as simplified
    polygon: schema.Polygon  # exterior + holes (4-connected background enclosed by the component)
    mean_confidence: float | None  # mean of confidence / 255 over the pixels; None without a map


def component_areas(mask: np.ndarray, class_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Pixel counts of the 8-connected components of each class, in label order (as in
    `find_regions`)."""
    areas = {}
    for class_id in sorted({int(c) for c in class_ids}):
        _, _, stats, _ = cv2.connectedComponentsWithStats(
            (mask == class_id).view(np.uint8), connectivity=8
        )
        areas[class_id] = stats[1:, cv2.CC_STAT_AREA].astype(np.int64)
    return areas


def find_regions(
    mask: np.ndarray,
    class_ids: Iterable[int],
    confidence: np.ndarray | None = None,
    simplify_px: float = 1.0,
    min_area_px: int = 0,
) -> list[Region]:
    """One Region per 8-connected component of each class in `class_ids`, in a uint8 [H, W] mask.

    Ordered by class id, then by cv2.connectedComponents label (raster order of first pixel).
    `confidence` is uint8 [H, W] (top probability x 255); `simplify_px` is the approxPolyDP
    tolerance in px (0 keeps every contour vertex). Components under `min_area_px` pixels
    (specks) are left out.
    """
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"mask must be uint8 [H, W], got {mask.dtype} {mask.shape}")
    if confidence is not None and (confidence.shape != mask.shape or confidence.dtype != np.uint8):
        raise ValueError(
            f"confidence must be uint8 {mask.shape}, got {confidence.dtype} {confidence.shape}"
        )
    regions = []
    for class_id in sorted({int(c) for c in class_ids}):
        count, labels, stats, centroids = cv2.connectedComponentsWithStats(
            (mask == class_id).view(np.uint8), connectivity=8
        )
        for label in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[label])
            if area < min_area_px:
                continue
            pixels = labels[y : y + h, x : x + w] == label
            polygon, perimeter = _polygon(pixels, x, y, simplify_px)
            mean_confidence = None
            if confidence is not None:
                mean_confidence = float(confidence[y : y + h, x : x + w][pixels].mean()) / 255.0
            regions.append(
                Region(
                    class_id=class_id,
                    bbox=(x, y, w, h),
                    pixels=pixels,
                    area_px=area,
                    centroid=(float(centroids[label, 0]), float(centroids[label, 1])),
                    perimeter_px=perimeter,
                    polygon=polygon,
                    mean_confidence=mean_confidence,
                )
            )
    return regions


def grow(mask: np.ndarray, margin_px: float) -> np.ndarray:
    """The bool [H, W] mask plus every pixel whose centre is within `margin_px` (Euclidean) of a
    mask pixel's centre: a dilation by a disc. A margin of 0 returns the mask unchanged (a copy)."""
    if margin_px < 0:
        raise ValueError(f"margin_px must be >= 0, got {margin_px}")
    grown = np.array(mask, dtype=bool)
    x, y, w, h = cv2.boundingRect(grown.view(np.uint8))
    if margin_px == 0 or w == 0:
        return grown
    reach = int(margin_px)  # no pixel further than this (per axis) from the mask is added
    rows = slice(max(y - reach, 0), y + h + reach)
    cols = slice(max(x - reach, 0), x + w + reach)
    distance = cv2.distanceTransform(
        (~grown[rows, cols]).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )
    grown[rows, cols] = distance <= margin_px
    return grown


def outline(mask: np.ndarray, simplify_px: float = 1.0) -> list[schema.Polygon]:
    """Polygons (with holes) of the 8-connected components of a bool [H, W] mask, in label order."""
    binary = np.ascontiguousarray(mask, dtype=bool).view(np.uint8)
    return [region.polygon for region in find_regions(binary, [1], simplify_px=simplify_px)]


def _polygon(
    pixels: np.ndarray, x: int, y: int, simplify_px: float
) -> tuple[schema.Polygon, float]:
    """The polygon and perimeter of one 8-connected component, a bool crop whose top-left is (x, y).

    Pixel (i, j) of the crop becomes cell (2i + 2, 2j + 2) of a double-resolution image, dilated
    to its 3 x 3 cells, so traced cell centres map back to pixel corners: cell / 2 + (x - 1, y - 1).
    """
    h, w = pixels.shape
    cells = np.zeros((2 * h + 3, 2 * w + 3), np.uint8)
    cells[2:-1:2, 2:-1:2] = pixels
    contours, hierarchy = cv2.findContours(
        cv2.dilate(cells, _CELL), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE
    )
    rings = [_simplify(contour, 2.0 * simplify_px) for contour in contours]
    origin = np.array([x - 1.0, y - 1.0])
    points = [(ring.reshape(-1, 2) / 2.0 + origin).tolist() for ring in rings]
    has_parent = hierarchy[0, :, 3] >= 0  # RETR_CCOMP: holes; the one outer ring has no parent
    polygon = schema.Polygon(
        exterior=points[int(np.argmin(has_parent))],
        holes=[points[i] for i in np.flatnonzero(has_parent)],
    )
    return polygon, sum(cv2.arcLength(ring, True) for ring in rings) / 2.0


def _simplify(contour: np.ndarray, epsilon: float) -> np.ndarray:
    """approxPolyDP of a closed contour, or the contour itself if that would degenerate it."""
    if epsilon > 0:
        simple = cv2.approxPolyDP(contour, epsilon, True)
        if len(simple) >= 3 and cv2.contourArea(simple) > 0:
            return simple
    return contour
