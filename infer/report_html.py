"""Self-contained HTML pages for the clinic: one report per plan, and an index for a folder.

Pages need nothing outside themselves: inline CSS, images as data URIs, no scripts, and a
Content-Security-Policy that forbids loading anything else. Every text from a plan or a file name
is escaped. Layout prints on A4.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.infer.warning_codes import unique

if TYPE_CHECKING:
    from dermaseg.infer.batch import PlanSummary
from dermaseg.infer.schema import (
    Calibration,
    Number,
    Plan,
    PlanWarning,
    ProcedurePlan,
    SourceInfo,
    Span,
    Tone,
    Treatable,
)

DASH = "\u2014"
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
CSS = """
:root { color-scheme: light; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: #1b1b1b; margin: 24px auto; max-width: 1100px; padding: 0 16px; }
h1 { font-size: 22px; margin: 0 0 4px; overflow-wrap: anywhere; }
h2 { font-size: 16px; margin: 22px 0 6px; border-bottom: 1px solid #ccc; padding-bottom: 2px; }
.meta { color: #555; margin: 0; }
.alert { border: 2px solid #b00020; background: #fdecee; color: #5c0010; padding: 8px 12px;
         margin: 12px 0; border-radius: 4px; }
.alert strong { color: #b00020; }
.alert ul { margin: 4px 0 0; padding-left: 20px; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr, th, td { break-inside: avoid; page-break-inside: avoid; }
thead { display: table-header-group; }
.swatch { display: inline-block; width: 14px; height: 14px; border: 1px solid #666;
          vertical-align: middle; margin-right: 4px; print-color-adjust: exact;
          -webkit-print-color-adjust: exact; }
.small { font-size: 11px; color: #444; white-space: nowrap; }
.small.wrap { white-space: normal; }
.failed td { background: #fdecee; }
.review.ok { border: 1px solid #8bb88b; background: #eef7ee; padding: 6px 12px; margin: 12px 0;
             border-radius: 4px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 0; }
dt { color: #555; }
dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 8px 0; break-inside: avoid; page-break-inside: avoid; }
figcaption { font-size: 11px; color: #555; }
img { max-width: 100%; height: auto; display: block; border: 1px solid #ccc; }
.pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; align-items: start; }
.pair figure { margin: 4px 0; }
.pair img { max-width: 100%; max-height: 420px; width: auto; height: auto; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 0 24px; }
.record { border: 1px solid #ccc; padding: 6px 10px; margin: 8px 0; border-radius: 4px; }
.record dl {
  grid-template-columns: max-content 1fr max-content 1fr; }
.use { font-size: 11px; color: #444; margin: 4px 0; }
.corrected { border-left: 4px solid #1e6b2a; background: #eef7ef; padding: 4px 10px;
             margin: 8px 0; }
td.thumb { width: 110px; }
td.thumb img { width: 100px; height: auto; }
@page { size: A4; margin: 12mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 9.5pt; }
  table { font-size: 8pt; }
  h2 { font-size: 11pt; margin: 10px 0 4px; }
  .pair img { max-height: 85mm; }
  h2 { break-after: avoid; page-break-after: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""


def e(value: object) -> str:
    """HTML-escaped text of any value (quotes included)."""
    return escape(str(value), quote=True)


def page(title: str, body: str, generator: str) -> str:
    """A complete HTML document around an already-escaped body."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="{e(generator)}">\n'
        f"<title>{e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def when(created: datetime | None) -> str:
    created = created or datetime.now(timezone.utc)
    zone = created.tzname()
    return created.strftime("%Y-%m-%d %H:%M") + (f" {zone}" if zone else "")


def area_text(px: int, mm2: float | None) -> str:
    """'2.35 cm² (235 mm²)' when calibrated, else '12,345 px'."""
    if mm2 is None:
        return f"{px:,} px"
    digits = 1 if mm2 < 10 else 0
    cm2 = "< 0.01" if 0 < mm2 < 0.5 else f"{mm2 / 100:,.2f}"
    return f"{cm2} cm² ({mm2:,.{digits}f} mm²)"


def length_text(px: float, mm: float | None) -> str:
    return f"{px:,.0f} px" if mm is None else f"{mm:,.1f} mm"


def hex_colour(rgb: Iterable[int]) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def swatch(colour: str) -> str:
    return f'<span class="swatch" style="background:{e(colour)}"></span>'


def tone_cell(tone: Tone | None) -> str:
    """Swatch, CIELAB, ITA° and its category, or a dash."""
    if tone is None:
        return DASH
    lightness, a, b = tone.lab
    return (
        f"{swatch(tone.hex)}{e(tone.hex)}<br>"
        f'<span class="small">L* {lightness:.1f} a* {a:.1f} b* {b:.1f}</span><br>'
        f'<span class="small">ITA {tone.ita_deg:.1f}° {e(tone.ita_category)}</span>'
    )


def table(headers: list[str], rows: list[list[str]], numeric: Collection[int] = ()) -> str:
    """A table of already-escaped cells; columns in `numeric` are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "\n".join(
        "<tr>"
        + "".join(
            f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
            for i, cell in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>"


def definitions(items: list[tuple[str, str]]) -> str:
    """A <dl> of (escaped label, escaped value) pairs."""
    return "<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def plan_warnings(plan: Plan) -> list[PlanWarning]:
    """Everything a clinician must see first: one warning per cause (the calibration's are in
    the plan's list already)."""
    return unique([*plan.calibration.warnings, *plan.warnings])


def warning_item(warning: PlanWarning) -> str:
    return f'<li><code class="small">{e(warning.code)}</code> {e(warning.text)}</li>'


def alerts(plan: Plan) -> str:
    """The plan's warnings in one box at the top, or nothing."""
    lines = plan_warnings(plan)
    if not lines:
        return ""
    items = "".join(warning_item(w) for w in lines)
    return f'<div class="alert" role="alert"><strong>Warnings</strong><ul>{items}</ul></div>'


def review_box(plan: Plan) -> str:
    """Whether to check the plan before treating, and why (the plan's review section)."""
    review = plan.review
    if review is None:
        return ""
    reasons = [r for r in review.reasons if r.sets_review]
    notes = [r for r in review.reasons if not r.sets_review]
    items = "".join(
        f'<li><code class="small">{e(r.code)}</code> {e(r.text)}</li>' for r in reasons + notes
    )
    if review.needs_review:
        head = "<strong>Check this plan before treating</strong>"
        return f'<div class="alert review" role="alert">{head}<ul>{items}</ul></div>'
    tail = f"<ul>{items}</ul>" if items else ""
    return f'<div class="review ok"><strong>No review flag</strong>{tail}</div>'


def decisions_section(plan: Plan) -> str:
    """Each class found: treated, left out, and why."""
    if not plan.decisions:
        return ""
    rows = [
        [
            e(d.class_name),
            e(d.decision),
            e(area_text(d.area_px, d.area_mm2)),
            str(d.patches),
            str(d.specks),
            e(d.text),
        ]
        for d in plan.decisions
    ]
    headers = ["Class", "Decision", "Patch area", "Patches", "Specks", "Why"]
    return "<h2>Classes found</h2>\n" + table(headers, rows, {2, 3, 4})


def calibration_section(calibration: Calibration) -> str:
    scale = calibration.mm_per_pixel
    items = [
        ("Method", e(calibration.method)),
        ("Scale", DASH if scale is None else f"{scale:.4f} mm/px ({1 / scale:.2f} px/mm)"),
    ]
    marker = calibration.marker
    if marker is not None:
        sides = ", ".join(f"{s:.1f}" for s in marker.side_lengths_px)
        items.append(
            (
                "Marker",
                f"{e(marker.dictionary)} id {marker.id}, side {marker.side_mm:g} mm "
                f"({e(sides)} px)",
            )
        )
    return "<h2>Calibration</h2>\n" + definitions(items)


def totals_section(plan: Plan, taxonomy: Taxonomy) -> str:
    rows = []
    for total in plan.classes:
        if total.class_id == 0:
            continue
        colour = (
            hex_colour(taxonomy.classes[total.class_id].color)
            if total.class_id < taxonomy.num_classes
            else "#ffffff"
        )
        rows.append(
            [
                swatch(colour) + e(total.name),
                "yes" if total.treatable else "no",
                str(total.patch_count),
                e(area_text(total.area_px, total.area_mm2)),
            ]
        )
    return "<h2>Totals per class</h2>\n" + table(
        ["Class", "Treatable", "Patches", "Area"], rows, {2, 3}
    )


def sourced_rule(treatable: Treatable) -> str:
    rule = treatable.min_patch_rule or "minimum patch size"
    return f'<span class="small">{e(rule)}; smaller components are specks, not treated</span>'


def treatable_section(treatable: Treatable) -> str:
    minimum = area_text(treatable.min_patch_area_px, treatable.min_patch_area_mm2)
    items = [
        ("Area to treat (margin included)", e(area_text(treatable.area_px, treatable.area_mm2))),
        ("Patches kept", str(treatable.patch_count)),
        ("Their area (no margin)", e(area_text(treatable.patch_area_px, treatable.patch_area_mm2))),
        ("Blending margin", f"{treatable.margin_mm:g} mm ({treatable.margin_px:.1f} px)"),
        ("Smallest patch treated", f"{e(minimum)}<br>" + sourced_rule(treatable)),
        ("Outlines", str(len(treatable.outline))),
    ]
    return "<h2>Treatable area</h2>\n" + definitions(items)


def patches_section(plan: Plan) -> str:
    """The treated patches with their tones; the others are counted in one line."""
    if not plan.patches:
        return "<h2>Treated patches</h2>\n<p>No patches were found.</p>"
    treated = [p for p in plan.patches if p.treatable]
    others = len(plan.patches) - len(treated)
    other_line = (
        f'<p class="small wrap">{others} other patch(es) not treated (class not treated by the '
        "procedure, or smaller than the minimum); all are in the plan JSON and on the "
        "overlay.</p>"
        if others
        else ""
    )
    if not treated:
        return f"<h2>Treated patches</h2>\n<p>No patch is treated.</p>{other_line}"
    rows = []
    for p in treated:
        tone = p.tone
        delta = tone.delta_e76 if tone is not None else None
        rows.append(
            [
                str(p.id),
                e(p.class_name),
                "yes" if p.treatable else "no",
                e(area_text(p.area_px, p.area_mm2)),
                e(length_text(p.perimeter_px, p.perimeter_mm)),
                DASH if p.mean_confidence is None else f"{p.mean_confidence:.2f}",
                tone_cell(tone.patch if tone is not None else None),
                tone_cell(tone.surround if tone is not None else None),
                DASH if delta is None else f"{delta:.1f}",
            ]
        )
    headers = [
        "#",
        "Class",
        "Treat",
        "Area",
        "Perimeter",
        "Confidence",
        "Patch colour",
        "Surrounding skin",
        "ΔE",
    ]
    return "<h2>Treated patches</h2>\n" + table(headers, rows, {0, 3, 4, 5, 8}) + other_line


UNITS = {"cm2": "cm²", "mm2": "mm²"}


def sourced(text: str, source: str) -> str:
    """Escaped text followed by where it came from."""
    return f'{e(text)} <span class="small">({e(source)})</span>'


def number_text(number: Number) -> str:
    unit = UNITS.get(number.unit, number.unit)
    value = f"{number.value:,.0f}" if number.unit == "px" else f"{number.value:,.4g}"
    return sourced(f"{value} {unit}", number.source)


def span_text(span: Span) -> str:
    return sourced(f"{span.low:g}-{span.high:g} {span.unit}", span.source)


def procedure_section(procedure: ProcedurePlan | None) -> str:
    """What the procedure treats, its pigment target (swatch) and sessions, with their sources."""
    if procedure is None:
        return ""
    target = procedure.pigment_target
    spread = target.spread_delta_e76
    items = [
        ("Procedure", f"{e(procedure.title)} ({e(procedure.name)}, {e(procedure.chosen_by)})"),
        ("Classes treated", e(", ".join(procedure.classes))),
        ("Patches treated", e(", ".join(map(str, procedure.treated_patch_ids)) or DASH)),
        ("Area to treat (margin included)", number_text(procedure.treatable_area)),
        ("Patch area (no margin)", number_text(procedure.patch_area)),
        ("Smallest patch treated", number_text(procedure.min_patch_area)),
        ("Blending margin", number_text(procedure.margin)),
        (
            f"Pigment target ({e(target.kind)})",
            (
                tone_cell(target.tone)
                if target.withheld is None
                else f"<strong>no swatch</strong>: {e(target.withheld)}"
            )
            + f'<br><span class="small wrap">{e(target.method)} ({e(target.source)})</span>'
            + (
                ""
                if target.skin_share is None
                else f'<br><span class="small">{100 * target.skin_share:.0f} % of the ring '
                "is skin</span>"
            ),
        ),
        ("Colour spread", DASH if spread is None else number_text(spread)),
        (
            "Sessions",
            sourced(
                f"{procedure.sessions.low}-{procedure.sessions.high}", procedure.sessions.source
            )
            + f'<br><span class="small">{e(procedure.sessions.rule)}</span>',
        ),
        ("Between sessions", span_text(procedure.interval_weeks)),
        ("Touch-up after", span_text(procedure.touch_up_months)),
    ]
    stability = procedure.stability
    if stability is not None:
        unit = UNITS.get(stability.unit, stability.unit)
        changes = "<br>".join(
            f"{e(c.class_name)}: {c.before:,.1f} → {c.after:,.1f} {e(unit)}"
            + ("" if c.change_percent is None else f" ({c.change_percent:+.1f}%)")
            for c in stability.classes
        )
        verdict = "stable" if stability.stable else "NOT stable"
        items.append(
            (
                f"Since {e(stability.previous_photo)}",
                f"{changes or DASH}<br>{verdict}, threshold "
                + number_text(stability.threshold_percent)
                + "".join(f'<br><span class="small">{e(w)}</span>' for w in stability.warnings),
            )
        )
    return "<h2>Procedure</h2>\n" + definitions(items)


def skin_section(tone: Tone | None) -> str:
    value = tone_cell(tone) if tone is not None else "not measured (too little bare skin)"
    return f"<h2>Skin tone</h2>\n<p>{value}</p>"


def image_data_uri(data: bytes) -> str:
    """A data URI of PNG or JPEG bytes."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        mime = "image/png"
    elif data.startswith(b"\xff\xd8\xff"):
        mime = "image/jpeg"
    else:
        raise ValueError("the overlay must be PNG or JPEG bytes")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def overlay_section(plan: Plan, overlay: bytes, photo: bytes | None = None) -> str:
    """The photo and the plan drawn over it, side by side (the overlay alone without a photo)."""
    name = e(plan.photo.name)
    drawn = (
        f'<figure><img id="overlay" src="{image_data_uri(overlay)}" alt="Plan drawn over {name}">'
        "<figcaption>Plan: outlines, patch numbers, scale</figcaption></figure>"
    )
    if photo is None:
        return drawn
    return (
        '<div class="pair"><figure>'
        f'<img id="photo" src="{image_data_uri(photo)}" alt="Photo {name}">'
        "<figcaption>Photo</figcaption></figure>"
        f"{drawn}</div>"
    )


INTENDED_USE = (
    "Intended use: measurements from the photo to support the clinician's judgement when "
    "planning micropigmentation. Not a diagnosis; check every outline before treating."
)


def record_section(plan: Plan, created: datetime | None) -> str:
    """Patient, visit, body site, clinician (as given) and the date, in one box."""
    from dermaseg.infer.meta import META_LABELS

    meta = plan.meta
    items = [
        (META_LABELS[key], e(meta.get(key, "")) or DASH)
        for key in ("patient", "visit", "body_site", "clinician")
    ]
    items.append(("Planned", e(when(created))))
    items.append(
        ("Photo", f"{e(plan.photo.name)} ({plan.photo.width} &times; {plan.photo.height} px)")
    )
    notes = meta.get("notes")
    note = f'<p><span class="small">Notes</span><br>{e(notes)}</p>' if notes else ""
    return f'<div class="record">{definitions(items)}{note}</div>'


def correction_note(plan: Plan) -> str:
    correction = plan.correction
    if correction is None:
        return ""
    return (
        '<p class="corrected"><strong>Corrected by a person</strong> with '
        f"{e(correction.tool)} ({e(correction.created)}): planned from "
        f"{e(correction.corrected_mask)}; the model's mask ({e(correction.original_mask or DASH)}"
        f", from {e(correction.original_source.name)}) is kept.</p>"
    )


def source_text(source: SourceInfo) -> str:
    if source.kind == "mask":
        return f"mask file {e(source.name)} (drawn by a person)"
    details = [
        f"contract {e(source.contract_version)}" if source.contract_version else "",
        e(source.precision) if source.precision else "",
        e(source.precision_reason) if source.precision_reason else "",
        f"working size {source.working_size} px" if source.working_size else "",
    ]
    extra = ", ".join(d for d in details if d)
    return f"model {e(source.name)}" + (f" ({extra})" if extra else "")


def source_section(plan: Plan) -> str:
    items = [
        ("Mask from", source_text(plan.source)),
        ("Source SHA-256", f'<span class="small">{e(plan.source.sha256)}</span>'),
        ("Photo SHA-256", f'<span class="small">{e(plan.photo.sha256)}</span>'),
        ("dermaseg", f"{e(plan.dermaseg_version)}, plan schema {e(plan.schema_version)}"),
    ]
    return "<h2>Source</h2>\n" + definitions(items)


def render_report(
    plan: Plan,
    overlay_png: bytes,
    taxonomy: Taxonomy,
    *,
    photo: bytes | None = None,
    created: datetime | None = None,
) -> str:
    """The clinic's report for one plan: the record (patient, visit...), the photo and the
    overlay (PNG or JPEG bytes) side by side, then the procedure and the measurements."""
    if created is None and plan.created:
        created = datetime.fromisoformat(plan.created)
    header = f'<h1>Treatment plan: {e(plan.photo.name)}</h1>\n<p class="use">{e(INTENDED_USE)}</p>'
    body = "\n".join(
        [
            header,
            record_section(plan, created),
            review_box(plan),
            alerts(plan),
            correction_note(plan),
            overlay_section(plan, overlay_png, photo),
            procedure_section(plan.procedure),
            decisions_section(plan),
            '<div class="cols"><div>',
            treatable_section(plan.treatable),
            calibration_section(plan.calibration),
            "</div><div>",
            totals_section(plan, taxonomy),
            skin_section(plan.skin_tone),
            "</div></div>",
            patches_section(plan),
            source_section(plan),
        ]
    )
    return page(f"dermaseg plan: {plan.photo.name}", body, f"dermaseg {plan.dermaseg_version}")


def report_link(name: str, report: str | Path | None, folder: Path | None) -> str:
    """The photo name, linked to its report (relative to `folder` when given)."""
    if report is None:
        return e(name)
    href = Path(os.path.relpath(report, folder) if folder is not None else report).as_posix()
    return f'<a href="{e(quote(href, safe="/", errors="surrogateescape"))}">{e(name)}</a>'


def index_row(
    summary: PlanSummary, report: Path | None, folder: Path | None, thumbnail: bytes | None = None
) -> str:
    """One planned photo's row: thumbnail, link, procedure and sessions, treatable area,
    per-class totals, warnings."""
    link = report_link(summary.path.name, report, folder)
    if summary.corrected:
        link += '<br><span class="small">corrected by a person</span>'
    thumb = f'<img src="{image_data_uri(thumbnail)}" alt="">' if thumbnail is not None else DASH
    procedure = e(summary.procedure or DASH) + (
        f'<br><span class="small">{e(summary.sessions)} sessions</span>' if summary.sessions else ""
    )
    totals = "<br>".join(
        f"{e(name)}: {e(area_text(area_px, area_mm2))} ({patches})"
        for name, area_px, area_mm2, patches in summary.classes
        if patches
    )
    warnings = "<br>".join(f"<code>{e(w.code)}</code> {e(w.text)}" for w in summary.warnings)
    area = area_text(summary.treatable_area_px, summary.treatable_area_mm2)
    status = "planned"
    if summary.needs_review:
        status = "<strong>check</strong><br>" + "<br>".join(
            f'<span class="small">{e(r.code)}</span>' for r in summary.review
        )
    return (
        f'<tr><td class="thumb">{thumb}</td><td>{link}</td><td>{status}</td>'
        f"<td>{procedure}</td>"
        f'<td class="num">{e(area)}</td>'
        f"<td>{totals or DASH}</td><td>{warnings or DASH}</td></tr>"
    )


def failure_row(failure: dict) -> str:
    return (
        f'<tr class="failed"><td>{DASH}</td><td>{e(failure["photo"])}</td><td>failed</td>'
        f'<td colspan="4">{e(failure["error"])}</td></tr>'
    )


def render_index(
    entries: list[tuple[PlanSummary, Path | None]],
    failures: list[dict] | None = None,
    folder: Path | None = None,
    *,
    title: str = "dermaseg plans",
    created: datetime | None = None,
    thumbnails: dict[str, bytes | None] | None = None,
) -> str:
    """A page listing a batch's photos.

    `entries`: (summary, report path) per planned photo (`batch.PlanSummary`);
    `failures`: {"photo": name, "error": message} per photo that failed. Report links are
    relative to `folder` (where the index is written) when given; `thumbnails` maps a
    summary's stem to a small JPEG or PNG of its overlay.
    """
    failures = failures or []
    thumbnails = thumbnails or {}
    headers = ["", "Photo", "Status", "Procedure", "To treat", "Per class (patches)", "Warnings"]
    head = "".join(f"<th>{h}</th>" for h in headers)
    entries = sorted(entries, key=lambda entry: not entry[0].needs_review)  # to check first
    rows = "\n".join(
        [
            index_row(summary, report, folder, thumbnails.get(summary.stem))
            for summary, report in entries
        ]
        + [failure_row(f) for f in failures]
    )
    body = (
        f"<h1>{e(title)}</h1>\n"
        f'<p class="meta">{len(entries)} planned ('
        f"{sum(s.needs_review for s, _ in entries)} to check first), {len(failures)} failed. "
        f"{e(when(created))}.</p>\n"
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>"
    )
    return page(title, body, "dermaseg")
