"""Ground truth measured on a rendered synthetic photo: areas, patches and true colours.

Colours are measured on the rendered uint8 RGB image BEFORE JPEG compression, with OpenCV's 8-bit
convention: rgb / 255 as float32 -> cv2.COLOR_RGB2Lab (L* 0..100); a mean is over per-pixel CIELAB.
"""

from __future__ import annotations

import cv2
import numpy as np

from dermaseg.datasets.synth_scene import THINNING

RING_PX = (5.0, 20.0)  # the surrounding skin ring: pixels this far (inclusive) from a patch
BARE_HAIR = 0.1  # a pixel is bare skin when strand coverage is below this
MIN_RING_PIXELS = 10  # fewer bare ring pixels than this give surround_lab = None


def lab_image(rgb: np.ndarray) -> np.ndarray:
    """CIELAB float32 [H, W, 3] of an RGB uint8 image (cv2 convention, L* 0..100)."""
    return cv2.cvtColor(rgb.astype(np.float32) / np.float32(255.0), cv2.COLOR_RGB2Lab)


def rounded(values: np.ndarray, digits: int = 3) -> list[float]:
    return [round(float(v), digits) for v in values]


def mean_lab(lab: np.ndarray, where: np.ndarray, min_pixels: int = 1) -> list[float] | None:
    """Mean CIELAB over the selected pixels, or None when too few are selected."""
    selected = where.astype(np.uint8)
    if cv2.countNonZero(selected) < min_pixels:
        return None
    return rounded(cv2.mean(lab, mask=selected)[:3])


def class_areas(mask: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = np.bincount(mask.ravel(), minlength=len(names))
    return {name: int(counts[i]) for i, name in enumerate(names)}


def skin_lab(lab: np.ndarray, mask: np.ndarray, bare: np.ndarray) -> list[float] | None:
    """Mean colour of lesion-free bare skin: background and thinning pixels, no hair or marker."""
    return mean_lab(lab, bare & ((mask == 0) | (mask == THINNING)))


def patches(
    lab: np.ndarray,
    mask: np.ndarray,
    bare: np.ndarray,
    names: list[str],
    mm_per_pixel: float | None,
) -> list[dict]:
    """One entry per 8-connected component of every non-background class in `mask`."""
    found: list[dict] = []
    skin = mask == 0
    present = np.flatnonzero(np.bincount(mask.ravel(), minlength=len(names)))
    for class_id in present[present > 0]:
        count, labels, stats, _ = cv2.connectedComponentsWithStats(
            (mask == class_id).astype(np.uint8), connectivity=8
        )
        for component in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[component])
            found.append(
                {
                    "id": len(found) + 1,
                    "class": names[class_id],
                    "area_px": area,
                    "area_mm2": None if mm_per_pixel is None else area * mm_per_pixel**2,
                    "bbox": [x, y, w, h],
                    **_patch_colours(lab, labels, component, skin, bare, (x, y, w, h)),
                }
            )
    return found


def _patch_colours(
    lab: np.ndarray,
    labels: np.ndarray,
    component: int,
    skin: np.ndarray,
    bare: np.ndarray,
    bbox: tuple[int, int, int, int],
) -> dict:
    """The patch's mean colour and that of the bare background skin in a ring around it."""
    x, y, w, h = bbox
    reach = int(RING_PX[1]) + 1
    rows = slice(max(0, y - reach), y + h + reach)
    cols = slice(max(0, x - reach), x + w + reach)
    inside = labels[rows, cols] == component
    distance = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5)
    ring = (distance >= RING_PX[0]) & (distance <= RING_PX[1]) & skin[rows, cols] & bare[rows, cols]
    crop = lab[rows, cols]
    return {
        "lab": mean_lab(crop, inside),
        "surround_lab": mean_lab(crop, ring, MIN_RING_PIXELS),
    }
