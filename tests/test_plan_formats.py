"""Formats derived from a plan: overlay, GeoJSON, COCO (against pycocotools and our reader),
palette PNG, and the HTML report and index."""

from __future__ import annotations

import base64
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.images import decode_mask, encode_png
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.batch import PlanSummary
from dermaseg.infer.formats import encode_rle, palette_mask_png, to_coco, to_geojson
from dermaseg.infer.geometry import Region, find_regions
from dermaseg.infer.overlay import (
    Style,
    dash_segments,
    fill_classes,
    render_overlay,
    scale_bar_length,
)
from dermaseg.infer.report_html import area_text, render_index, render_report
from dermaseg.infer.rescale import to_photo_mask
from dermaseg.infer.schema import Plan
from tests.conftest import write_image
from tests.plan_factory import make_plan, synthetic_mask, synthetic_photo

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TAXONOMY = DEFAULT_TAXONOMY


@pytest.fixture(scope="module")
def mask() -> np.ndarray:
    return synthetic_mask()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return synthetic_photo()


@pytest.fixture(scope="module")
def plan(mask: np.ndarray) -> Plan:
    return make_plan(mask, name="photo.png")


def regions_of(mask: np.ndarray) -> list[Region]:
    """The regions a plan of `mask` is made from (as `planner.plan_from_mask` finds them)."""
    return find_regions(mask, range(1, TAXONOMY.num_classes))


def patch_mask(mask: np.ndarray, class_id: int, bbox: tuple[int, int, int, int]) -> np.ndarray:
    """The full-size binary mask of the 8-connected region of `class_id` with that bbox."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask == class_id).astype(np.uint8), connectivity=8
    )
    for label in range(1, count):
        if tuple(int(v) for v in stats[label][:4]) == tuple(bbox):
            return labels == label
    raise AssertionError(f"no region of class {class_id} with bbox {bbox}")


def longest_white_run(image: np.ndarray) -> int:
    """Longest horizontal run of pure white pixels."""
    white = np.all(image == 255, axis=2).astype(np.int8)
    best = 0
    for row in white:
        edges = np.flatnonzero(np.diff(np.concatenate(([0], row, [0]))))
        if edges.size:
            best = max(best, int((edges[1::2] - edges[0::2]).max()))
    return best


# ---- overlay ---------------------------------------------------------------------------------


def test_the_fixture_plan_is_what_the_tests_assume(plan: Plan, mask: np.ndarray) -> None:
    assert len(plan.patches) == 5
    assert sum(p.area_px for p in plan.patches) == int((mask > 0).sum())
    assert any(p.polygon.holes for p in plan.patches)
    assert not plan.patches[0].treatable  # the 4 px vitiligo speck
    assert plan.calibration.mm_per_pixel == 0.2


def test_overlay_draws_outlines_over_the_photo(
    photo: np.ndarray, mask: np.ndarray, plan: Plan
) -> None:
    overlay = render_overlay(photo, mask, plan, TAXONOMY)
    assert overlay.shape == photo.shape and overlay.dtype == np.uint8
    filled = fill_classes(photo, mask, TAXONOMY.palette, 0.4)
    outline = np.array([(round(y), round(x)) for p in plan.patches for x, y in p.polygon.exterior])
    rows, cols = outline.T
    assert (overlay[rows, cols] != photo[rows, cols]).any(axis=1).mean() > 0.95
    assert (overlay[rows, cols] != filled[rows, cols]).any(axis=1).mean() > 0.8
    treatable = np.array(
        [(round(y), round(x)) for o in plan.treatable.outline for x, y in o.exterior]
    )
    rows, cols = treatable.T
    pixels = overlay[rows, cols].astype(int)
    black_or_white = (pixels.max(axis=1) < 80) | (pixels.min(axis=1) > 180)
    assert black_or_white.mean() > 0.75  # white dashes on a dark line, where no label or legend
    assert np.array_equal(photo, synthetic_photo())  # the photo itself is left alone


def test_scale_bar_drawn_only_when_calibrated(photo: np.ndarray, mask: np.ndarray) -> None:
    """The bar is the only white run that long: dashes, text and legend swatches are shorter."""
    _, bar = scale_bar_length(photo.shape[1], 0.2)
    calibrated = render_overlay(photo, mask, make_plan(mask, mm_per_pixel=0.2), TAXONOMY)
    uncalibrated = render_overlay(photo, mask, make_plan(mask, mm_per_pixel=None), TAXONOMY)
    assert longest_white_run(calibrated) >= bar
    assert longest_white_run(uncalibrated) < bar


@pytest.mark.parametrize("width", [64, 256, 1000, 4032])
@pytest.mark.parametrize("mm_per_pixel", [0.013, 0.05, 0.2, 1.7])
def test_scale_bar_is_a_round_fifth_of_the_width(width: int, mm_per_pixel: float) -> None:
    mm, bar = scale_bar_length(width, mm_per_pixel)
    assert 0.15 <= bar / width <= 0.25
    assert abs(bar * mm_per_pixel - mm) <= mm_per_pixel
    mantissa = mm / 10 ** np.floor(np.log10(mm))
    assert round(mantissa, 6) in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8)


def test_lines_and_text_grow_with_the_photo() -> None:
    small, phone = Style.for_size(256, 256), Style.for_size(3024, 4032)
    assert small.line >= 1 and small.text_size("88")[1] >= 8  # readable at 256 px
    assert phone.line >= 6 and phone.text_size("88")[1] >= 0.015 * 3024
    assert small.text_size("88")[1] / 256 < 0.05


def test_large_overlay_has_its_scale_bar(mask: np.ndarray) -> None:
    big_mask = cv2.resize(mask, (800, 600), interpolation=cv2.INTER_NEAREST)
    big_photo = cv2.resize(synthetic_photo(), (800, 600))
    overlay = render_overlay(big_photo, big_mask, make_plan(big_mask, mm_per_pixel=0.05), TAXONOMY)
    _, bar = scale_bar_length(800, 0.05)
    assert longest_white_run(overlay) >= bar
    assert overlay.shape == big_photo.shape


def test_dashes_alternate_along_the_ring_and_follow_its_corners() -> None:
    square = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], float)
    pieces = dash_segments(square, 15.0)  # 400 px round: on 0-15, 30-45, ..., 390-400
    lengths = [float(np.hypot(*np.diff(p, axis=0).T).sum()) for p in pieces]
    assert np.allclose(lengths, [15.0] * 13 + [10.0])
    assert pieces[3].tolist() == [[90, 0], [100, 0], [100, 5]]  # turns the corner


def test_overlay_rejects_a_mask_of_another_size(photo: np.ndarray, plan: Plan) -> None:
    with pytest.raises(ValueError, match="mask"):
        render_overlay(photo, np.zeros((10, 10), np.uint8), plan, TAXONOMY)


# ---- GeoJSON ---------------------------------------------------------------------------------


def signed_area(ring: list[list[float]]) -> float:
    xy = np.asarray(ring)
    return float(np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1])) / 2


def test_geojson_has_a_closed_polygon_per_patch_and_outline(plan: Plan) -> None:
    collection = json.loads(json.dumps(to_geojson(plan)))
    assert collection["type"] == "FeatureCollection"
    assert "pixel" in collection["properties"]["coordinates"]
    assert "y down" in collection["properties"]["coordinates"]
    kinds = [f["properties"]["kind"] for f in collection["features"]]
    assert kinds.count("patch") == len(plan.patches)
    assert kinds.count("treatable") == len(plan.treatable.outline)
    holes = 0
    for feature in collection["features"]:
        assert feature["type"] == "Feature" and feature["geometry"]["type"] == "Polygon"
        exterior, *inner = feature["geometry"]["coordinates"]
        for ring in [exterior, *inner]:
            assert ring[0] == ring[-1] and len(ring) >= 4
        assert signed_area(exterior) > 0
        assert all(signed_area(ring) < 0 for ring in inner)
        holes += len(inner)
    assert holes >= 1
    first = collection["features"][1]["properties"]
    patch = plan.patches[1]
    assert (first["id"], first["class"], first["area_px"]) == (2, "vitiligo", patch.area_px)
    assert first["area_mm2"] == pytest.approx(patch.area_px * 0.04)
    assert first["tone"]["delta_e76"] == 21.0
    assert first["mean_confidence"] == 0.9


# ---- COCO RLE and instances ------------------------------------------------------------------


def pycocotools_rle(binary: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def test_rle_encoder_matches_pycocotools_byte_for_byte() -> None:
    rng = np.random.default_rng(7)
    masks = [rng.random((h, w)) < p for h, w, p in [(1, 1, 0.5), (7, 13, 0.5), (40, 31, 0.05)]]
    masks += [rng.random((37, 23)) < p for p in (0.01, 0.3, 0.9, 0.99)]
    big = np.zeros((600, 800), bool)
    big[20:590, 3:797] = True  # long runs: multi-character numbers
    big[0, 0] = big[-1, -1] = True
    edges = np.zeros((5, 4), bool)
    edges[-1, 0] = edges[0, 1] = True  # a run crossing from one column into the next
    masks += [big, edges, np.zeros((5, 4), bool), np.ones((5, 4), bool), np.ones((1, 9), bool)]
    for binary in masks:
        assert encode_rle(binary) == pycocotools_rle(binary)


def test_rle_of_a_crop_is_the_rle_of_the_whole_frame() -> None:
    rng = np.random.default_rng(8)
    for _ in range(50):
        height, width = (int(v) for v in rng.integers(1, 30, 2))
        frame = np.zeros((height, width), bool)
        y0, x0 = int(rng.integers(0, height)), int(rng.integers(0, width))
        y1, x1 = int(rng.integers(y0 + 1, height + 1)), int(rng.integers(x0 + 1, width + 1))
        frame[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.6
        crop = frame[y0:y1, x0:x1]
        assert encode_rle(crop, (x0, y0), (height, width)) == pycocotools_rle(frame)
    with pytest.raises(ValueError, match="leaves"):
        encode_rle(np.ones((3, 3), bool), (2, 0), (3, 4))


def test_coco_annotations_decode_to_each_patch_with_pycocotools(
    plan: Plan, mask: np.ndarray
) -> None:
    data = json.loads(json.dumps(to_coco(plan, regions_of(mask), TAXONOMY)))
    assert [c["name"] for c in data["categories"]] == TAXONOMY.names[1:]
    assert data["images"] == [{"id": 1, "file_name": "photo.png", "width": 160, "height": 120}]
    coco = COCO()
    coco.dataset = data
    coco.createIndex()
    assert len(coco.getAnnIds(imgIds=[1])) == len(plan.patches)
    for patch in plan.patches:
        annotation = coco.anns[patch.id]
        expected = patch_mask(mask, patch.class_id, patch.bbox)
        assert np.array_equal(coco.annToMask(annotation).astype(bool), expected)
        rle = {
            "size": annotation["segmentation"]["size"],
            "counts": annotation["segmentation"]["counts"].encode(),
        }
        assert coco_mask.area(rle) == annotation["area"] == patch.area_px
        assert list(coco_mask.toBbox(rle)) == annotation["bbox"] == list(patch.bbox)
        assert annotation["iscrowd"] == 0 and annotation["score"] == 0.9
        assert annotation["category_id"] == patch.class_id


def test_coco_reads_back_to_the_same_mask_with_our_reader(
    tmp_path: Path, plan: Plan, mask: np.ndarray, photo: np.ndarray
) -> None:
    root = tmp_path / "corrections"
    write_image(root / "images" / "photo.png", photo)
    (root / "annotations.json").write_text(json.dumps(to_coco(plan, regions_of(mask), TAXONOMY)))
    (root / "dataset.yaml").write_text(
        "format: coco\nannotations: annotations.json\nimages: images\n"
    )
    dataset = Dataset.open(root)
    assert dataset.listing_problems == []
    assert [r.id for r in dataset.records] == ["photo"]
    sample = dataset.load(dataset.records[0])
    assert np.array_equal(sample.mask, mask)


def test_coco_score_is_one_for_a_mask_plan(mask: np.ndarray) -> None:
    data = to_coco(make_plan(mask, confidence=None), regions_of(mask), TAXONOMY)
    assert {a["score"] for a in data["annotations"]} == {1.0}


def test_coco_refuses_regions_the_plan_does_not_describe(plan: Plan, mask: np.ndarray) -> None:
    changed = mask.copy()
    changed[changed == 3] = 2
    with pytest.raises(ValueError, match="region"):
        to_coco(plan, regions_of(changed), TAXONOMY)
    regions = regions_of(mask)
    with pytest.raises(ValueError, match=r"patch 2 .* is not the region"):
        to_coco(plan, [regions[0], regions[0], *regions[2:]], TAXONOMY)
    with pytest.raises(ValueError, match="regions for the plan"):
        to_coco(plan, regions[:-1], TAXONOMY)


def test_palette_png_keeps_class_ids_and_shows_class_colours(mask: np.ndarray) -> None:
    data = palette_mask_png(mask, TAXONOMY)
    with Image.open(io.BytesIO(data)) as image:
        assert image.mode == "P"
        palette = np.array(image.getpalette()[: 3 * TAXONOMY.num_classes]).reshape(-1, 3)
    assert np.array_equal(palette, TAXONOMY.palette)
    assert np.array_equal(decode_mask(data, "mask.png").pixels, mask)
    with pytest.raises(ValueError, match="class id"):
        palette_mask_png(np.full((4, 4), 7, np.uint8), TAXONOMY)


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_photo_mask_repeats_each_analysed_pixel(mask: np.ndarray, scale: int) -> None:
    odd = np.ascontiguousarray(mask[:37, :51])
    assert np.array_equal(to_photo_mask(odd, scale), np.repeat(np.repeat(odd, scale, 0), scale, 1))
    crop = odd == 2  # a region's pixels (bool) for the COCO masks
    assert np.array_equal(
        to_photo_mask(crop, scale), np.repeat(np.repeat(crop, scale, 0), scale, 1)
    )


def test_fast_png_is_lossless_in_every_layout(photo: np.ndarray, mask: np.ndarray) -> None:
    """Level 1 (OpenCV, Up filter, RLE) keeps every value and the channel order; the palette
    PNG is as deep as the palette needs, smaller than at level 6."""
    rgba = np.dstack([photo, np.arange(photo.size // 3, dtype=np.uint32).reshape(mask.shape) % 251])
    for pixels, mode in ((photo, "RGB"), (mask * 60, "L"), (rgba.astype(np.uint8), "RGBA")):
        for level in (1, 6):
            with Image.open(io.BytesIO(encode_png(pixels, compress_level=level))) as image:
                assert image.mode == mode
                assert np.array_equal(np.asarray(image), pixels)
    fast = palette_mask_png(mask, TAXONOMY)
    assert len(fast) < len(encode_png(mask, palette=TAXONOMY.palette, compress_level=6))
    with Image.open(io.BytesIO(fast)) as image:
        assert image.mode == "P" and fast[24] == 2  # IHDR bit depth: 4 classes, 2 bits
        assert np.array_equal(np.asarray(image), mask)
    with pytest.raises(ValueError, match="PNG"):
        encode_png(np.zeros((4, 4, 2), np.uint8))


# ---- HTML ------------------------------------------------------------------------------------

VOID = {"meta", "img", "br", "link", "input", "hr", "col", "source", "wbr", "area", "base"}


class StrictParser(HTMLParser):
    """Collects attributes and fails on unbalanced or mismatched tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, name, value or "") for name, value in attrs]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> StrictParser:
    parser = StrictParser()
    parser.feed(page)
    parser.close()
    assert parser.stack == [], f"unclosed tags {parser.stack}"
    return parser


def render(plan: Plan, photo: np.ndarray, mask: np.ndarray) -> tuple[str, bytes]:
    overlay = encode_png(render_overlay(photo, mask, plan, TAXONOMY))
    return render_report(plan, overlay, TAXONOMY), overlay


def test_report_shows_totals_patches_and_the_overlay(
    plan: Plan, photo: np.ndarray, mask: np.ndarray
) -> None:
    page, overlay = render(plan, photo, mask)
    parsed = parse(page)
    text = " ".join(parsed.text)
    for total in plan.classes[1:]:
        assert area_text(total.area_px, total.area_mm2) in text
    treatable = plan.treatable
    assert area_text(treatable.area_px, treatable.area_mm2) in text
    assert "0.2000 mm/px" in text and "manual" in text
    assert "synthetic <b>test</b> plan" in text
    assert "#c09079" in text and "ITA 37.9° intermediate" in text
    assert "synthetic.onnx" in text
    rows = [t for t in parsed.tags if t == "tr"]
    treated = [p for p in plan.patches if p.treatable]
    assert len(rows) == 1 + (len(plan.classes) - 1) + 1 + len(treated)  # tones: treated only
    assert len(treated) < len(plan.patches) and "other patch(es) not treated" in text
    images = [v for tag, name, v in parsed.attrs if tag == "img" and name == "src"]
    assert len(images) == 1
    assert base64.b64decode(images[0].split(",", 1)[1]) == overlay
    assert "@page { size: A4; margin: 12mm; }" in page and "@media print" in page
    assert "page-break-inside: avoid" in page and "max-width: 100%" in page


def test_report_escapes_names_and_loads_nothing_from_outside(
    photo: np.ndarray, mask: np.ndarray
) -> None:
    plan = make_plan(mask, name='<script>x</script>".jpg')
    page, _ = render(plan, photo, mask)
    parsed = parse(page)
    assert "<script" not in page.lower() and "script" not in parsed.tags
    assert "&lt;script&gt;x&lt;/script&gt;&quot;.jpg" in page
    assert "synthetic &lt;b&gt;test&lt;/b&gt; plan" in page
    assert "http://" not in page and "https://" not in page
    for _, name, value in parsed.attrs:
        if name in ("src", "href"):
            assert value.startswith("data:image/png;base64,"), value[:40]
        assert not name.startswith("on")
    assert re.search(r"Content-Security-Policy\" content=\"default-src 'none'", page)


def test_uncalibrated_report_warns_and_gives_pixels(photo: np.ndarray, mask: np.ndarray) -> None:
    plan = make_plan(mask, mm_per_pixel=None, confidence=None)
    page, _ = render(plan, photo, mask)
    text = " ".join(parse(page).text)
    assert "not calibrated" in text and "uncalibrated" in text
    assert f"{plan.treatable.area_px:,} px" in text
    assert "mm²" not in text


def test_index_links_reports_and_lists_failures(tmp_path: Path, plan: Plan) -> None:
    entries = [
        (PlanSummary.from_plan(Path("photo.png"), "photo", plan), tmp_path / "a b/photo.html"),
        (PlanSummary.from_plan(Path("evil.jpg"), "evil", plan), Path("javascript:alert(1)")),
        (PlanSummary.from_plan(Path("no-report.jpg"), "no-report", plan), None),
    ]
    failures = [{"photo": "<b>bad</b>.jpg", "error": "not an <image>"}]
    page = render_index(entries, failures, tmp_path)
    parsed = parse(page)
    links = [v for tag, name, v in parsed.attrs if tag == "a" and name == "href"]
    assert links[0] == "a%20b/photo.html"
    assert not links[1].startswith("javascript:") and len(links) == 2
    text = " ".join(parsed.text)
    assert "3 planned (0 to check first), 1 failed" in text
    assert "not an <image>" in text and "&lt;b&gt;bad&lt;/b&gt;.jpg" in page
    assert area_text(plan.treatable.area_px, plan.treatable.area_mm2) in text
    assert "synthetic <b>test</b> plan" in text
    assert "http://" not in page and "https://" not in page
