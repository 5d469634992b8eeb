"""What a visit comparison shows: an overlay image (the first photo, the second aligned onto it,
the change map) and an HTML section / page with the figures."""

from __future__ import annotations

import cv2
import numpy as np

from dermaseg import __version__
from dermaseg.infer.change_map import CATEGORIES, COLOURS, ChangeMap, paint
from dermaseg.infer.overlay import FONT, Style, draw_label
from dermaseg.infer.report_html import (
    DASH,
    area_text,
    definitions,
    e,
    hex_colour,
    image_data_uri,
    page,
    swatch,
    table,
)

PANEL_LONG_SIDE = 900  # each panel of the overlay at most this large
LABELS = {
    "unchanged": "unchanged",
    "grown": "grown",
    "new": "new",
    "shrunk": "shrunk (repigmented)",
    "cleared": "cleared",
}


def _panel(image: np.ndarray, title: str, factor: float) -> np.ndarray:
    height, width = image.shape[:2]
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    image = np.ascontiguousarray(image)
    style = Style.for_size(*image.shape[:2])
    text_w, text_h, depth = style.text_size(title)
    pad = style.pad
    image[: text_h + depth + 2 * pad, : text_w + 2 * pad] //= 3
    cv2.putText(
        image,
        title,
        (pad, pad + text_h),
        FONT,
        style.font_scale,
        (255, 255, 255),
        style.font_thickness,
        cv2.LINE_AA,
    )
    return image


def render_change_overlay(
    rgb_a: np.ndarray,
    rgb_b_on_a: np.ndarray,
    change: ChangeMap,
    labels_a: np.ndarray,
    labels_b_on_a: np.ndarray,
) -> np.ndarray:
    """Three panels side by side: first visit, second visit aligned onto it, change map (each
    category's colour, the first visit's patch ids, new patches as "+id" of the second visit,
    what the second photo does not show darkened)."""
    factor = min(1.0, PANEL_LONG_SIDE / max(rgb_a.shape[:2]))
    painted = paint(rgb_a, change.category, change.seen)
    style = Style.for_size(*painted.shape[:2])
    boxes = []
    for labels, rows, key, prefix in (
        (labels_a, change.patches, "id", ""),
        (labels_b_on_a, change.new_patches, "id_b", "+"),
    ):
        for row in rows:
            ys, xs = np.nonzero(labels == row[key])
            if len(xs):
                boxes.append((f"{prefix}{row[key]}", float(xs.mean()), float(ys.mean())))
    for text, x, y in boxes:
        width, height, depth = style.text_size(text)
        box_w, box_h = width + 2 * style.pad, height + depth + 2 * style.pad
        x0, y0 = round(x - box_w / 2), round(y - box_h / 2)
        draw_label(painted, text, (x0, y0, x0 + box_w, y0 + box_h), style, (255, 255, 255))
    panels = [
        _panel(rgb_a.copy(), "first visit", factor),
        _panel(rgb_b_on_a.copy(), "second visit, aligned", factor),
        _panel(painted, "change", factor),
    ]
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    return np.hstack([panels[0], gap, panels[1], gap, panels[2]])


def _area(row: dict, key: str) -> str:
    return area_text(row[f"{key}_px"], row.get(f"{key}_mm2"))


def _percent(value: float | None) -> str:
    return DASH if value is None else f"{value:+.1f} %"


def change_section(report: dict, overlay_png: bytes | None) -> str:
    """The comparison as an HTML section (escaped); embeddable in a plan report."""
    parts = ["<h2>Change since the previous visit</h2>"]
    if report.get("warnings"):
        items = "".join(f"<li>{e(w)}</li>" for w in report["warnings"])
        parts.append(f'<div class="alert"><strong>Check</strong><ul>{items}</ul></div>')
    change = report.get("change")
    if change is None:
        parts.append("<p>Totals only (the photos were not found): see the table below.</p>")
        rows = [
            [
                e(row["class"]),
                f"{row['area']['before']:,.1f}",
                f"{row['area']['after']:,.1f}",
                _percent(row["area"]["change_percent"]),
            ]
            for row in report["classes"]
        ]
        unit = "mm²" if report["unit"] == "mm2" else "px"
        parts.append(
            table(["class", f"before ({unit})", f"after ({unit})", "change"], rows, {1, 2, 3})
        )
        return "\n".join(parts)
    alignment = report["alignment"]
    parts.append(
        definitions(
            [
                ("First visit", e(report["photos"]["before"])),
                ("Second visit", e(report["photos"]["after"])),
                (
                    "Alignment",
                    e(
                        f"{alignment['method']}: {alignment['inliers']} of {alignment['matches']} "
                        f"matches agree, {alignment['reprojection_rms_px']} px RMS, zoom "
                        f"{alignment['zoom_b_per_a']}x, {100 * alignment['overlap']:.0f} % overlap"
                    ),
                ),
                ("Scale", e(change["scale_source"])),
                ("Method", e(change["method"])),
            ]
        )
    )
    if overlay_png is not None:
        parts.append(f'<figure><img src="{image_data_uri(overlay_png)}" alt="Change map"></figure>')
    legend = " ".join(
        f"{swatch(hex_colour(COLOURS[name]))}{e(LABELS[name])}" for name in CATEGORIES
    )
    parts.append(f"<p>{legend}</p>")
    rows = [
        [
            e(row["class"]),
            _area(row, "before"),
            _area(row, "after"),
            _percent(row["change_percent"]),
            *(_area(row, name) for name in CATEGORIES),
        ]
        for row in change["classes"]
    ]
    headers = ["class", "before", "after", "change", *(e(LABELS[n]) for n in CATEGORIES)]
    parts.append(table(headers, rows, set(range(1, len(headers)))))
    rows = [
        [
            str(p["id"]),
            e(p["class"]),
            e(", ".join(str(i) for i in p["matched_ids_b"]) or DASH),
            _area(p, "before"),
            _area(p, "after"),
            _percent(p["change_percent"]),
            e(p["status"] + (" (partly outside the second photo)" if p["partly_unseen"] else "")),
        ]
        for p in change["patches"]
    ]
    rows += [
        [DASH, e(p["class"]), str(p["id_b"]), DASH, _area(p, "after"), DASH, "new"]
        for p in change["new_patches"]
    ]
    parts.append(
        table(
            [
                "patch",
                "class",
                "matched patch(es), second visit",
                "before",
                "after",
                "change",
                "status",
            ],
            rows,
            {3, 4, 5},
        )
    )
    return "\n".join(parts)


def render_compare_page(report: dict, overlay_png: bytes | None) -> str:
    title = f"dermaseg compare: {report['before']} -> {report['after']}"
    header = f"<h1>{e(report['before'])} &rarr; {e(report['after'])}</h1>"
    return page(
        title, header + "\n" + change_section(report, overlay_png), f"dermaseg {__version__}"
    )
