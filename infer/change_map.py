"""Change map between two visits' masks on visit A's pixel grid (visit B already aligned onto it).

Patches are 8-connected components of each class, numbered as the plan numbers them
(`geometry.find_regions`: by class id, then by `cv2.connectedComponentsWithStats` label), so the
patch numbers here are the plans' patch ids. B's patch-number image is resampled onto A's grid with
nearest neighbour (`align.to_a`), and only A's pixels that B's photo shows count.

Per class, every pixel of either visit falls in one category:

* unchanged: the class at both visits;
* grown: the class only at B, in a B patch that overlaps an A patch of the class;
* new: the class only at B, in a B patch that overlaps no A patch;
* shrunk: the class only at A, in an A patch that overlaps some B patch (for vitiligo: repigmented);
* cleared: the class only at A, in an A patch that overlaps no B patch.

Patches are matched across visits when they overlap after warping (one pixel is enough); each A
patch lists the B patches it overlaps and is called grown / shrunk / unchanged (its B area within
`unchanged_percent` of its A area), cleared, merged (a B patch overlaps it and another A patch) or
split (it overlaps several B patches).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CATEGORIES = ("unchanged", "grown", "new", "shrunk", "cleared")  # category id = index + 1
COLOURS = {  # RGB for the overlay
    "unchanged": (120, 120, 255),
    "grown": (255, 150, 0),
    "new": (230, 0, 0),
    "shrunk": (0, 190, 90),
    "cleared": (0, 200, 220),
}
UNCHANGED_PERCENT = 10.0


def patch_labels(mask: np.ndarray, class_ids) -> tuple[np.ndarray, dict[int, int]]:
    """int32 [H, W] patch numbers (0: no patch) as the plan numbers its patches, and each
    number's class id."""
    labels = np.zeros(mask.shape, np.int32)
    classes: dict[int, int] = {}
    number = 0
    for class_id in sorted({int(c) for c in class_ids}):
        count, components, _, _ = cv2.connectedComponentsWithStats(  # as geometry.find_regions
            (mask == class_id).view(np.uint8), connectivity=8
        )
        if count > 1:
            inside = components > 0
            labels[inside] = components[inside] + number
            classes.update({number + k: class_id for k in range(1, count)})
            number += count - 1
    return labels, classes


@dataclass(frozen=True)
class ChangeMap:
    category: np.ndarray  # uint8 [H, W]: 0 nothing, else CATEGORIES index + 1
    seen: np.ndarray  # bool [H, W]: A's pixels that B shows
    classes: list[dict]  # per class: px per category and A, B totals
    patches: list[dict]  # per A patch: matches, areas, status
    new_patches: list[dict]  # B patches with no A patch


def _lookup(classes: dict[int, int], size: int) -> np.ndarray:
    table = np.zeros(size + 1, np.int32)
    for number, class_id in classes.items():
        table[number] = class_id
    return table


def change_map(
    labels_a: np.ndarray,
    classes_a: dict[int, int],
    labels_b: np.ndarray,
    classes_b: dict[int, int],
    seen: np.ndarray,
    class_ids,
    unchanged_percent: float = UNCHANGED_PERCENT,
) -> ChangeMap:
    """The change map (see the module docstring); `labels_b` is B's patch-number image already on
    A's grid, `seen` the A pixels B shows. Areas are A-grid pixel counts over `seen`."""
    seen = np.asarray(seen, bool)
    table_a = _lookup(classes_a, max(classes_a, default=0))
    table_b = _lookup(classes_b, max(classes_b, default=0))
    class_a, class_b = table_a[labels_a], table_b[labels_b]
    category = np.zeros(labels_a.shape, np.uint8)
    class_rows, patch_rows, new_rows = [], [], []
    for class_id in sorted({int(c) for c in class_ids}):
        a = (class_a == class_id) & seen
        b = (class_b == class_id) & seen
        both = a & b
        pairs = np.unique(
            labels_a[both].astype(np.int64) << 32 | labels_b[both].astype(np.int64)
        ).tolist()
        pairs = [(p >> 32, p & 0xFFFFFFFF) for p in pairs]
        matched_a = {pa for pa, _ in pairs}
        matched_b = {pb for _, pb in pairs}
        gained, lost = b & ~a, a & ~b
        new = gained & ~np.isin(labels_b, list(matched_b))
        cleared = lost & ~np.isin(labels_a, list(matched_a))
        for index, pixels in enumerate((both, gained & ~new, new, lost & ~cleared, cleared)):
            category[pixels] = index + 1
        area_a = np.bincount(labels_a[a], minlength=len(table_a))
        area_b = np.bincount(labels_b[b], minlength=len(table_b))
        class_rows.append(
            {
                "class_id": class_id,
                "before_px": int(a.sum()),
                "after_px": int(b.sum()),
                **{
                    f"{name}_px": int(np.count_nonzero(category[a | b] == k + 1))
                    for k, name in enumerate(CATEGORIES)
                },
            }
        )
        partners_b: dict[int, list[int]] = {}
        for pa, pb in pairs:
            partners_b.setdefault(pb, []).append(pa)
        for number in sorted(n for n, c in classes_a.items() if c == class_id):
            if area_a[number] == 0:
                continue  # outside what B shows
            matches = sorted(pb for pa, pb in pairs if pa == number)
            after = int(sum(area_b[m] for m in matches))
            patch_rows.append(
                {
                    "id": number,
                    "class_id": class_id,
                    "matched_ids_b": matches,
                    "before_px": int(area_a[number]),
                    "after_px": after,
                    "status": _status(
                        number, matches, partners_b, int(area_a[number]), after, unchanged_percent
                    ),
                    "partly_unseen": bool(np.any((labels_a == number) & ~seen)),
                }
            )
        for number in sorted(n for n, c in classes_b.items() if c == class_id):
            if number not in matched_b and area_b[number] > 0:
                new_rows.append(
                    {"id_b": number, "class_id": class_id, "after_px": int(area_b[number])}
                )
    return ChangeMap(category, seen, class_rows, patch_rows, new_rows)


def _status(
    number: int,
    matches: list[int],
    partners_b: dict[int, list[int]],
    before: int,
    after: int,
    unchanged_percent: float,
) -> str:
    if not matches:
        return "cleared"
    if any(len(partners_b[m]) > 1 for m in matches):
        return "merged"
    if len(matches) > 1:
        return "split"
    change = 100.0 * (after - before) / before
    if abs(change) <= unchanged_percent:
        return "unchanged"
    return "grown" if change > 0 else "shrunk"


def paint(rgb: np.ndarray, category: np.ndarray, seen: np.ndarray, alpha: float = 0.55):
    """`rgb` with each category's colour blended in and what B does not show darkened."""
    out = rgb.astype(np.float32)
    for index, name in enumerate(CATEGORIES):
        where = category == index + 1
        out[where] = (1 - alpha) * out[where] + alpha * np.float32(COLOURS[name])
    out[~seen] *= 0.35
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
