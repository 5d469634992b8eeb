"""Draw a plan over its photo: class fill, patch and treatable outlines, ids, scale bar, legend.

Plan coordinates are OpenCV's (pixel centres at integer x, y), drawn with sub-pixel precision.
Line widths and text scale with the photo, so the overlay reads the same at 256 px and 12 MP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer.rescale import analysed_geometry
from dermaseg.infer.schema import Patch, Plan, Polygon

FONT = cv2.FONT_HERSHEY_SIMPLEX
SHIFT = 4  # sub-pixel bits for cv2 drawing
NICE_MANTISSAS = (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8)  # scale bar lengths, times a power of ten
SCALE_BAR_FRACTION = 0.2  # of the photo width
LEGEND_SCALE = 0.8  # legend text relative to patch labels
LEGEND_MAX_WIDTH = 0.45  # of the photo width; a legend that needs more is left out
WHITE, BLACK = (255, 255, 255), (0, 0, 0)

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in px, end exclusive


@dataclass(frozen=True)
class Style:
    """Sizes in pixels derived from the photo size."""

    line: int
    font_scale: float
    font_thickness: int
    pad: int

    @classmethod
    def for_size(cls, height: int, width: int) -> Style:
        side = min(height, width)
        return cls.with_font(max(1, round(side / 400)), max(0.4, side / 1100))

    @classmethod
    def with_font(cls, line: int, font_scale: float) -> Style:
        return cls(line, font_scale, max(1, round(font_scale * 1.3)), max(2, round(font_scale * 6)))

    def smaller(self, factor: float) -> Style:
        """The same lines with text scaled by `factor`."""
        return Style.with_font(self.line, self.font_scale * factor)

    def text_size(self, text: str) -> tuple[int, int, int]:
        """Width, height above the baseline, and depth below it."""
        (width, height), baseline = cv2.getTextSize(
            text, FONT, self.font_scale, self.font_thickness
        )
        return width, height, baseline


def render_overlay(
    rgb: np.ndarray, mask: np.ndarray, plan: Plan, taxonomy: Taxonomy, *, alpha: float = 0.4
) -> np.ndarray:
    """The photo with the plan drawn on it, RGB uint8 of the size of `rgb`.

    `rgb` and `mask` are the photo as analysed (1/`plan.photo.analysis_scale` of its size);
    `plan` is in the photo's own pixels and is drawn at the analysed size
    (`rescale.analysed_geometry`)."""
    plan = analysed_geometry(plan)
    height, width = mask.shape[:2]
    if mask.ndim != 2 or mask.dtype != np.uint8 or rgb.shape != (height, width, 3):
        raise ValueError(
            f"need a uint8 mask [H, W] and RGB [H, W, 3]; got {mask.shape}, {rgb.shape}"
        )
    if rgb.dtype != np.uint8:
        raise ValueError(f"the photo must be RGB uint8, got {rgb.dtype}")
    if (plan.photo.width, plan.photo.height) != (width, height):
        raise ValueError(
            f"the plan is for a {plan.photo.width}x{plan.photo.height} photo, not {width}x{height}"
        )
    style = Style.for_size(height, width)
    out = fill_classes(rgb, mask, taxonomy.palette, alpha)
    for patch in plan.patches:
        colour = _colour(taxonomy, patch.class_id)
        rings = [_fixed(r) for r in _rings(patch.polygon, style.line / 2)]
        cv2.polylines(out, rings, True, colour, style.line, cv2.LINE_AA, SHIFT)
    for polygon in plan.treatable.outline:
        draw_dashed_outline(out, polygon, style)
    taken: list[Box] = []
    if plan.calibration.mm_per_pixel is not None:
        taken.append(draw_scale_bar(out, plan.calibration.mm_per_pixel, style))
    patch_boxes = [(x, y, x + w, y + h) for x, y, w, h in (p.bbox for p in plan.patches)]
    legend = draw_legend(out, taxonomy, style.smaller(LEGEND_SCALE), patch_boxes + taken)
    if legend is not None:
        taken.append(legend)
    for patch, box in place_labels(plan.patches, style, (height, width), taken):
        draw_label(out, str(patch.id), box, style, _colour(taxonomy, patch.class_id))
    return out


def fill_classes(
    rgb: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float
) -> np.ndarray:
    """The photo with every non-background class pixel blended with its class colour."""
    lut = np.zeros((256, 1, 3), np.uint8)
    lut[: len(palette), 0] = palette
    colour = cv2.LUT(cv2.merge([mask, mask, mask]), lut)
    inside_lut = np.zeros(256, np.uint8)
    inside_lut[1 : len(palette)] = 255
    inside = cv2.LUT(mask, inside_lut)
    out = rgb.copy()
    cv2.copyTo(cv2.addWeighted(rgb, 1 - alpha, colour, alpha, 0), inside, out)
    return out


def _colour(taxonomy: Taxonomy, class_id: int) -> tuple[int, int, int]:
    if 0 <= class_id < taxonomy.num_classes:
        return tuple(int(c) for c in taxonomy.classes[class_id].color)
    return WHITE


def _fixed(points: np.ndarray) -> np.ndarray:
    """Float plan points as cv2 fixed-point coordinates."""
    return np.round(points * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def _rings(polygon: Polygon, tolerance: float) -> list[np.ndarray]:
    """Exterior and holes as float [N, 2] arrays, simplified to within `tolerance` px: thick lines
    through thousands of staircase vertices are slow to draw."""
    rings = []
    for ring in (polygon.exterior, *polygon.holes):
        points = np.asarray(ring, np.float32).reshape(-1, 2)
        if len(points) > 3:
            points = cv2.approxPolyDP(points, tolerance, True).reshape(-1, 2)
        if len(points):
            rings.append(points.astype(np.float64))
    return rings


def dash_segments(ring: np.ndarray, dash: float) -> list[np.ndarray]:
    """The 'on' pieces of a closed ring [N, 2] cut into alternating dashes of length `dash`."""
    closed = np.vstack([ring, ring[:1]])
    along = np.concatenate(([0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))))
    total = float(along[-1])
    if total <= 0:
        return []
    cuts = np.arange(0.0, total, dash)
    at = np.unique(np.concatenate((along, cuts)))  # sorted, a vertex on a cut once
    points = np.stack(
        [np.interp(at, along, closed[:, 0]), np.interp(at, along, closed[:, 1])], axis=1
    )
    pieces = []
    for start in cuts[::2]:
        first = np.searchsorted(at, start, "left")
        last = np.searchsorted(at, start + dash, "right")
        if last - first >= 2:
            pieces.append(points[first:last])
    return pieces


def draw_dashed_outline(out: np.ndarray, polygon: Polygon, style: Style) -> None:
    """A treatable outline: white dashes on a solid dark line, thicker than patch outlines."""
    width = 2 * style.line
    dash = 8.0 * width
    rings = _rings(polygon, style.line / 2)
    cv2.polylines(
        out, [_fixed(r) for r in rings], True, BLACK, width + 2 * style.line, cv2.LINE_AA, SHIFT
    )
    dashes = [_fixed(piece) for ring in rings for piece in dash_segments(ring, dash)]
    if dashes:
        cv2.polylines(out, dashes, False, WHITE, width, cv2.LINE_AA, SHIFT)


def shade(out: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float = 0.35) -> None:
    """Darken a rectangle (clipped to the image) to `keep` of its brightness."""
    height, width = out.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if x1 > x0 and y1 > y0:
        roi = out[y0:y1, x0:x1]
        cv2.convertScaleAbs(roi, roi, keep)


def overlap(a: Box, b: Box) -> int:
    """Area shared by two boxes."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def label_candidates(patch: Patch, box_w: int, box_h: int, size: tuple[int, int]) -> list[Box]:
    """On the centroid when the label fits inside the patch's bbox, else beside the bbox (above,
    below, right, left) so the label does not hide a small patch; all kept in the image."""
    height, width = size
    x, y, w, h = patch.bbox
    cx, cy = patch.centroid
    gap = max(1, box_h // 4)
    if box_w <= w and box_h <= h:
        spots = [(cx - box_w / 2, cy - box_h / 2)]
    else:
        mid_x, mid_y = x + w / 2 - box_w / 2, y + h / 2 - box_h / 2
        spots = [
            (mid_x, y - gap - box_h),
            (mid_x, y + h + gap),
            (x + w + gap, mid_y),
            (x - gap - box_w, mid_y),
        ]
    boxes = []
    for left, top in spots:
        x0 = int(min(max(0, round(left)), max(0, width - box_w)))
        y0 = int(min(max(0, round(top)), max(0, height - box_h)))
        boxes.append((x0, y0, x0 + box_w, y0 + box_h))
    return boxes


def place_labels(
    patches: list[Patch], style: Style, size: tuple[int, int], panels: list[Box]
) -> list[tuple[Patch, Box]]:
    """A box for each patch id label, largest patches first; a label that would cover another
    label or a panel tries its next spot, else is left out."""
    taken = np.zeros((len(panels) + len(patches), 4), np.int64)
    if panels:  # an empty list has shape (0,), which does not broadcast to (0, 4)
        taken[: len(panels)] = panels
    count = len(panels)
    placed = []
    for patch in sorted(patches, key=lambda p: -p.area_px):
        text_w, text_h, depth = style.text_size(str(patch.id))
        box_w, box_h = text_w + 2 * style.pad, text_h + depth + 2 * style.pad
        for box in label_candidates(patch, box_w, box_h, size):
            other = taken[:count]
            if not np.any(
                (box[0] < other[:, 2])
                & (other[:, 0] < box[2])
                & (box[1] < other[:, 3])
                & (other[:, 1] < box[3])
            ):
                taken[count] = box
                count += 1
                placed.append((patch, box))
                break
    return placed


def draw_label(
    out: np.ndarray, text: str, box: Box, style: Style, border: tuple[int, int, int]
) -> None:
    """White text on a dark box with a coloured border."""
    x0, y0, x1, y1 = box
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), BLACK, cv2.FILLED)
    cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), border, max(1, style.line // 2))
    _, text_h, _ = style.text_size(text)
    origin = (x0 + style.pad, y0 + style.pad + text_h)
    cv2.putText(out, text, origin, FONT, style.font_scale, WHITE, style.font_thickness, cv2.LINE_AA)


def scale_bar_length(width_px: int, mm_per_pixel: float) -> tuple[float, int]:
    """A round length in mm whose bar is nearest to a fifth of the width, and its length in px."""
    target = SCALE_BAR_FRACTION * width_px * mm_per_pixel
    power = math.floor(math.log10(target))
    candidates = [
        round(m * 10.0**p, 9) for p in range(power - 1, power + 2) for m in NICE_MANTISSAS
    ]
    best = min(candidates, key=lambda mm: abs(math.log(mm / target)))
    return best, max(1, round(best / mm_per_pixel))


def length_label(mm: float) -> str:
    """Whole centimetres as cm ('1 cm', '20 cm'), anything else as mm ('5 mm', '15 mm')."""
    if mm >= 10 and mm % 10 == 0:
        return f"{mm / 10:g} cm"
    return f"{mm:g} mm"


def draw_scale_bar(out: np.ndarray, mm_per_pixel: float, style: Style) -> Box:
    """A white bar with end ticks and its length, on a dark panel at the bottom left; returns
    the panel."""
    height, width = out.shape[:2]
    mm, bar = scale_bar_length(width, mm_per_pixel)
    text = length_label(mm)
    text_w, text_h, depth = style.text_size(text)
    thick = max(2, 2 * style.line)
    tick = 2 * thick
    pad = style.pad
    panel_w = max(bar, text_w) + 2 * pad
    panel_h = text_h + depth + tick + 3 * pad
    x0, y1 = 2 * pad, height - 2 * pad
    y0 = y1 - panel_h
    shade(out, x0, y0, x0 + panel_w, y1)
    cv2.putText(
        out,
        text,
        (x0 + pad, y0 + pad + text_h),
        FONT,
        style.font_scale,
        WHITE,
        style.font_thickness,
        cv2.LINE_AA,
    )
    bar_y = y1 - pad - tick // 2
    left, right = x0 + pad, x0 + pad + bar - 1
    cv2.rectangle(out, (left, bar_y - thick // 2), (right, bar_y + thick // 2), WHITE, cv2.FILLED)
    for x in (left, right):
        cv2.line(out, (x, bar_y - tick // 2), (x, bar_y + tick // 2), WHITE, max(1, thick // 2))
    return (x0, y0, x0 + panel_w, y1)


def draw_legend(out: np.ndarray, taxonomy: Taxonomy, style: Style, avoid: list[Box]) -> Box | None:
    """Class swatches and the treatable outline's look, on a dark panel in the corner that hides
    the least of the boxes in `avoid`, counting each box by the fraction hidden (top right wins
    ties); returns the panel, or None when it was left out for being too wide for the photo."""
    height, width = out.shape[:2]
    entries = [(c.name, tuple(int(v) for v in c.color)) for c in taxonomy.classes[1:]]
    entries.append(("to treat", None))
    sizes = [style.text_size(name) for name, _ in entries]
    row = max(h + d for _, h, d in sizes) + style.pad
    swatch = row - style.pad
    panel_w = swatch + max(w for w, _, _ in sizes) + 3 * style.pad
    panel_h = len(entries) * row + style.pad
    if panel_w > LEGEND_MAX_WIDTH * width:
        return None
    margin = 2 * style.pad
    right, bottom = width - margin - panel_w, height - margin - panel_h
    corners = [(right, margin), (margin, margin), (right, bottom), (margin, bottom)]

    def hidden(corner: tuple[int, int]) -> float:
        panel = (*corner, corner[0] + panel_w, corner[1] + panel_h)
        return sum(overlap(panel, box) / max(1, overlap(box, box)) for box in avoid)

    x0, y0 = min(corners, key=hidden)
    shade(out, x0, y0, x0 + panel_w, y0 + panel_h)
    for i, ((name, colour), (_, text_h, _)) in enumerate(zip(entries, sizes, strict=True)):
        top = y0 + style.pad + i * row
        left = x0 + style.pad
        if colour is None:
            mid = top + swatch // 2
            cv2.line(out, (left, mid), (left + swatch, mid), WHITE, max(1, 2 * style.line))
        else:
            cv2.rectangle(out, (left, top), (left + swatch, top + swatch), colour, cv2.FILLED)
        cv2.putText(
            out,
            name,
            (left + swatch + style.pad, top + (swatch + text_h) // 2),
            FONT,
            style.font_scale,
            WHITE,
            style.font_thickness,
            cv2.LINE_AA,
        )
    return (x0, y0, x0 + panel_w, y0 + panel_h)
