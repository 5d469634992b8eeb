"""Post-processing learned on the validation split at export (`dermaseg.postprocess` metadata).

Connected components are not an ONNX operator, so the graph's `mask` is the network's; the rule
is stored in the model's metadata and applied to the mask first by whoever plans from it (and by
`dermaseg eval` of an .onnx model), as nnU-Net applies its learned post-processing:

    {"min_component_fraction": {"vitiligo": 0.001, ...}, "fill_holes": true}

- `min_component_fraction`: per class name, 8-connected components of that class smaller than
  this share of the photo's pixels become background (class 0). Missing classes: 0 (keep all).
- `fill_holes`: background (class 0) regions enclosed by one class become that class.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from dermaseg.infer import contract

FRACTIONS = (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)  # candidates tried per class at export


def parse_rule(metadata: dict[str, str]) -> dict | None:
    """The rule in a model's metadata, or None when the model has none."""
    text = metadata.get(contract.KEY_POSTPROCESS)
    if not text:
        return None
    rule = json.loads(text)
    return {
        "min_component_fraction": dict(rule.get("min_component_fraction") or {}),
        "fill_holes": bool(rule.get("fill_holes", False)),
    }


def remove_small_components(mask: np.ndarray, class_id: int, fraction: float) -> np.ndarray:
    """`mask` with the 8-connected components of `class_id` below `fraction` x pixels set to 0."""
    if fraction <= 0:
        return mask
    binary = (mask == class_id).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] < fraction * mask.size
    small[0] = False  # label 0 is everything that is not the class
    if count <= 1 or not small.any():
        return mask
    out = mask.copy()
    out[small[labels]] = 0
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Background (0) regions that touch only one class and not the photo's edge become it."""
    background = (mask == 0).view(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
    height, width = mask.shape
    out = mask
    kernel = np.ones((3, 3), np.uint8)
    for component in range(1, count):
        x, y, w, h = stats[component, :4]
        if x == 0 or y == 0 or x + w == width or y + h == height:
            continue  # touches the photo's edge: not a hole
        rows, cols = slice(y - 1, y + h + 1), slice(x - 1, x + w + 1)
        inside = (labels[rows, cols] == component).view(np.uint8)
        ring = cv2.dilate(inside, kernel).view(bool) & ~inside.view(bool)
        classes = np.unique(mask[rows, cols][ring])  # 8-connected: the ring holds no background
        if len(classes) == 1:
            out = out.copy() if out is mask else out
            out[rows, cols][inside.view(bool)] = classes[0]
    return out


def apply_postprocess(mask: np.ndarray, rule: dict | None, class_names: list[str]) -> np.ndarray:
    """The class-id mask [H, W] after `rule` (see the module docstring); `rule=None`: unchanged."""
    if not rule:
        return mask
    fractions = rule.get("min_component_fraction") or {}
    for class_id, name in enumerate(class_names):
        if class_id and fractions.get(name, 0.0) > 0:
            mask = remove_small_components(mask, class_id, float(fractions[name]))
    if rule.get("fill_holes"):
        mask = fill_holes(mask)
    return mask
