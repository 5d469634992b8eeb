"""Geometry for the synthetic photo generator: lesion outlines, rasterised masks, the marker.

Coordinates are OpenCV pixel-centre coordinates: pixel (x, y) covers [x - 0.5, x + 0.5].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUBPIXEL_BITS = 4
MARKER_CELLS = 6  # 4x4 data bits plus a one-cell black border
# White margin around the black square, in cells. Three keep the sticker's own outline out of the
# marker's candidate group in cv2.aruco (corners closer than 1/8 of the perimeter are grouped, and a
# group whose largest outline nears the photo edge is dropped whole).
QUIET_CELLS = 3


def fill_polygon(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    """Rasterise a float polygon [N, 2] (x, y) into a uint8 0/1 mask of `shape` (H, W)."""
    canvas = np.zeros(shape, np.uint8)
    points = np.round(polygon * (1 << SUBPIXEL_BITS)).astype(np.int32)
    cv2.fillPoly(canvas, [points], 1, cv2.LINE_8, shift=SUBPIXEL_BITS)
    return canvas


def rotate(points: np.ndarray, angle: float) -> np.ndarray:
    """Rotate points [N, 2] about the origin by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def polar_blob(
    rng: np.random.Generator,
    center: np.ndarray,
    radius: float,
    roughness: float,
    aspect: float = 1.0,
) -> np.ndarray:
    """An irregular closed outline: a circle whose radius is perturbed by random harmonics."""
    theta = np.linspace(0.0, 2.0 * np.pi, 160, endpoint=False)
    k = np.arange(2, 17)
    amplitude = rng.normal(0.0, roughness, k.size) / k**1.6
    phase = rng.uniform(0.0, 2.0 * np.pi, k.size)
    r = 1.0 + (amplitude[:, None] * np.cos(k[:, None] * theta + phase[:, None])).sum(axis=0)
    r = np.clip(r, 0.35, None) * radius
    outline = np.stack([r * np.cos(theta) * aspect, r * np.sin(theta)], axis=1)
    return rotate(outline, rng.uniform(0.0, np.pi)) + center


def tapered_stroke(start: np.ndarray, end: np.ndarray, bend: float, width: float) -> np.ndarray:
    """Outline of a gently curved stroke, `width` wide in the middle and pointed at both ends."""
    t = np.linspace(0.0, 1.0, 64)[:, None]
    direction = end - start
    normal = np.array([-direction[1], direction[0]]) / (np.linalg.norm(direction) + 1e-9)
    control = (start + end) / 2.0 + normal * bend
    curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
    tangent = 2 * (1 - t) * (control - start) + 2 * t * (end - control)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    side = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    half = 0.5 * width * np.sin(np.pi * t) ** 0.5
    return np.concatenate([curve + side * half, (curve - side * half)[::-1]])


@dataclass(frozen=True)
class MarkerPlacement:
    """Where an ArUco sticker lies: centre, black-square side in pixels, in-plane rotation."""

    center: tuple[float, float]
    side_px: float
    angle: float  # radians; positive turns clockwise on screen (image y points down)

    @property
    def cell_px(self) -> float:
        return self.side_px / MARKER_CELLS

    def square(self, cells: float) -> np.ndarray:
        """Corners TL, TR, BR, BL of a centred square `cells` marker cells wide."""
        half = 0.5 * cells * self.cell_px
        unit = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64) * half
        return rotate(unit, self.angle) + np.asarray(self.center)

    def corners(self) -> np.ndarray:
        """The black square's outer corners in ArUco order (TL, TR, BR, BL of the marker)."""
        return self.square(MARKER_CELLS)

    def footprint(self) -> np.ndarray:
        """The sticker's outline: the black square plus its white quiet zone."""
        return self.square(MARKER_CELLS + 2 * QUIET_CELLS)
