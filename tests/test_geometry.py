"""Regions, margins and outlines of class masks (dermaseg.infer.geometry)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer import schema
from dermaseg.infer.geometry import Region, find_regions, grow, outline


def ring_area(ring: list[tuple[float, float]]) -> float:
    return cv2.contourArea(np.array(ring, np.float32))


def polygon_area(polygon: schema.Polygon) -> float:
    return ring_area(polygon.exterior) - sum(ring_area(hole) for hole in polygon.holes)


def assert_valid(polygon: schema.Polygon, simplified: bool = True) -> None:
    """Every ring has >= 3 distinct points and a positive area; unsimplified holes lie strictly
    inside the exterior (simplification works ring by ring, so it may make them touch)."""
    assert schema.Polygon.model_validate(polygon.model_dump()) == polygon
    for ring in [polygon.exterior, *polygon.holes]:
        assert len(set(ring)) >= 3
        assert ring_area(ring) > 0
    assert polygon_area(polygon) > 0
    if not simplified:
        exterior = np.array(polygon.exterior, np.float32)
        for x, y in (point for hole in polygon.holes for point in hole):
            assert cv2.pointPolygonTest(exterior, (x, y), False) > 0


def disc(size: int, centre: tuple[int, int], radius: int, value: int = 1) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, centre, radius, value, -1)
    return mask


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    """Many components of classes 1..3, with holes, islands and touching classes."""
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.random((120, 160)).astype(np.float32), (0, 0), 3)
    return np.digitize(noise, np.quantile(noise, [0.4, 0.6, 0.8])).astype(np.uint8)


def test_areas_and_pixels_rebuild_the_mask(blobs: np.ndarray) -> None:
    regions = find_regions(blobs, [3, 1, 2])
    assert [r.class_id for r in regions] == sorted(r.class_id for r in regions)
    for class_id in (1, 2, 3):
        of_class = [r for r in regions if r.class_id == class_id]
        assert len(of_class) > 1
        assert sum(r.area_px for r in of_class) == np.count_nonzero(blobs == class_id)
        painted = np.zeros(blobs.shape, np.int32)
        for r in of_class:
            x, y, w, h = r.bbox
            assert r.pixels.shape == (h, w) and np.count_nonzero(r.pixels) == r.area_px
            assert r.pixels[0].any() and r.pixels[-1].any()  # the bbox is tight
            assert r.pixels[:, 0].any() and r.pixels[:, -1].any()
            painted[y : y + h, x : x + w] += r.pixels
        assert np.array_equal(painted, blobs == class_id)
    assert any(r.polygon.holes for r in regions)
    for r in regions:
        assert_valid(r.polygon)
        assert r.mean_confidence is None
    for r in find_regions(blobs, [1, 2, 3], simplify_px=0):
        assert_valid(r.polygon, simplified=False)
        assert r.area_px <= polygon_area(r.polygon) <= r.area_px + r.perimeter_px / 8


def test_rectangle_bbox_centroid_polygon_and_perimeter() -> None:
    mask = np.zeros((50, 60), np.uint8)
    mask[10:20, 5:35] = 2
    (region,) = find_regions(mask, [1, 2])
    assert region.class_id == 2
    assert region.bbox == (5, 10, 30, 10)
    assert region.area_px == 300
    assert region.centroid == pytest.approx((19.5, 14.5))
    assert sorted(region.polygon.exterior) == [(4.5, 9.5), (4.5, 19.5), (34.5, 9.5), (34.5, 19.5)]
    assert region.polygon.holes == []
    assert region.perimeter_px == pytest.approx(80.0)


def test_ring_has_one_hole_inside_the_exterior() -> None:
    mask = disc(100, (50, 50), 30)
    cv2.circle(mask, (50, 50), 12, 0, -1)
    (region,) = find_regions(mask, [1])
    assert len(region.polygon.holes) == 1
    assert_valid(region.polygon)
    hole = np.array(region.polygon.holes[0], np.float32)
    assert cv2.pointPolygonTest(hole, (50.0, 50.0), False) > 0
    assert polygon_area(region.polygon) == pytest.approx(region.area_px, rel=0.02)
    assert region.centroid == pytest.approx((50.0, 50.0))


def test_island_in_a_hole_is_its_own_region_and_leaves_the_hole_whole() -> None:
    mask = np.zeros((40, 40), np.uint8)
    mask[5:35, 5:35] = 1
    mask[10:30, 10:30] = 0
    mask[18:22, 18:22] = 1  # same class, not touching the ring
    mask[12:15, 25:28] = 2  # another class in the same hole
    ring, island, other = find_regions(mask, [1, 2], simplify_px=0)
    assert (ring.area_px, island.area_px, other.area_px) == (500, 16, 9)
    assert island.bbox == (18, 18, 4, 4) and other.class_id == 2
    (hole,) = ring.polygon.holes
    assert ring_area(hole) == pytest.approx(20 * 20 - 4 / 8)  # the hole, corners bevelled
    assert polygon_area(ring.polygon) == pytest.approx(500 + 4 / 8)
    assert island.polygon.holes == [] and other.polygon.holes == []
    assert_valid(ring.polygon, simplified=False)


def test_diagonally_touching_holes_are_two_holes() -> None:
    mask = np.ones((6, 6), np.uint8)
    mask[2, 2] = mask[3, 3] = 0  # background is 4-connected: two holes
    (region,) = find_regions(mask, [1], simplify_px=0)
    assert len(region.polygon.holes) == 2
    assert_valid(region.polygon, simplified=False)
    assert polygon_area(region.polygon) == pytest.approx(34 + 2 * 4 / 8)


def test_big_disc_area_and_perimeter() -> None:
    radius = 150
    (region,) = find_regions(disc(400, (200, 190), radius), [1])
    assert polygon_area(region.polygon) == pytest.approx(region.area_px, rel=0.01)
    assert region.area_px == pytest.approx(math.pi * radius**2, rel=0.01)
    assert region.perimeter_px == pytest.approx(2 * math.pi * radius, rel=0.02)
    assert region.centroid == pytest.approx((200.0, 190.0), abs=0.01)


def test_unsimplified_polygon_encloses_exactly_the_pixels_and_bevels() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[2:6, 2] = mask[5, 2:6] = 1  # an L: one concave corner
    (region,) = find_regions(mask, [1], simplify_px=0)
    assert polygon_area(region.polygon) == pytest.approx(7 + 1 / 8)
    exterior = np.array(region.polygon.exterior)
    assert exterior.min(axis=0).tolist() == [1.5, 1.5]
    assert exterior.max(axis=0).tolist() == [5.5, 5.5]


@pytest.mark.parametrize(
    ("rows", "cols", "area"),
    [
        (slice(3, 4), slice(4, 5), 1.0),  # one pixel
        (slice(3, 4), slice(1, 9), 8.0),  # 1 x 8
        (slice(1, 9), slice(6, 7), 8.0),  # 8 x 1
    ],
)
def test_thin_components_give_their_pixel_rectangle(rows: slice, cols: slice, area: float) -> None:
    mask = np.zeros((10, 10), np.uint8)
    mask[rows, cols] = 1
    for simplify_px in (0.0, 1.0, 5.0):
        (region,) = find_regions(mask, [1], simplify_px=simplify_px)
        assert_valid(region.polygon)
        x, y, w, h = region.bbox
        corners = [(x - 0.5, y - 0.5), (x - 0.5, y + h - 0.5)]
        corners += [(x + w - 0.5, y - 0.5), (x + w - 0.5, y + h - 0.5)]
        assert sorted(region.polygon.exterior) == corners
        assert polygon_area(region.polygon) == area == region.area_px


def test_one_pixel_wide_diagonal_and_ring_stay_valid() -> None:
    diagonal = np.eye(12, dtype=np.uint8)
    thin_ring = np.zeros((40, 40), np.uint8)
    cv2.circle(thin_ring, (20, 20), 12, 1, 1)
    for mask in (diagonal, thin_ring):
        for simplify_px in (0.0, 1.0, 3.0):
            (region,) = find_regions(mask, [1], simplify_px=simplify_px)
            assert_valid(region.polygon, simplified=simplify_px > 0)
    (ring,) = find_regions(thin_ring, [1])
    assert len(ring.polygon.holes) == 1


def test_larger_simplify_gives_fewer_vertices() -> None:
    mask = disc(300, (150, 150), 100)
    counts = [len(find_regions(mask, [1], simplify_px=s)[0].polygon.exterior) for s in (0, 1, 4)]
    assert counts[0] > counts[1] > counts[2] >= 3


def test_mean_confidence() -> None:
    mask = np.zeros((20, 20), np.uint8)
    mask[2:6, 2:6] = 1
    mask[10:12, 10:15] = 1
    confidence = np.full(mask.shape, 7, np.uint8)
    confidence[2:6, 2:4] = 255
    confidence[2:6, 4:6] = 0
    confidence[10:12, 10:15] = 204
    first, second = find_regions(mask, [1], confidence)
    assert first.mean_confidence == pytest.approx(0.5)
    assert second.mean_confidence == pytest.approx(0.8)


def test_bad_inputs_are_refused() -> None:
    mask = np.zeros((4, 4), np.uint8)
    with pytest.raises(ValueError, match="mask"):
        find_regions(mask.astype(np.int32), [1])
    with pytest.raises(ValueError, match="confidence"):
        find_regions(mask, [1], np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="confidence"):
        find_regions(mask, [1], np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="margin"):
        grow(mask > 0, -1.0)


def test_grow_one_pixel_is_a_disc() -> None:
    mask = np.zeros((15, 15), bool)
    mask[7, 7] = True
    grown = grow(mask, 3.0)
    yy, xx = np.mgrid[:15, :15]
    assert np.array_equal(grown, (xx - 7) ** 2 + (yy - 7) ** 2 <= 9)
    assert np.count_nonzero(grown) == 29 == pytest.approx(math.pi * 9, abs=1.5)
    assert np.count_nonzero(grow(mask, 2.9)) == 25  # distance 3 is not within 2.9
    assert not mask[6, 7]  # the input is left alone


def test_grow_at_the_image_corner_and_of_a_big_margin() -> None:
    mask = np.zeros((30, 40), bool)
    mask[0, 0] = True
    yy, xx = np.mgrid[:30, :40]
    assert np.array_equal(grow(mask, 10.0), xx**2 + yy**2 <= 100)
    rect = np.zeros((200, 200), bool)
    rect[90:110, 80:120] = True
    yy, xx = np.mgrid[:200, :200]
    dx = np.maximum(0, np.maximum(80 - xx, xx - 119))  # distance to the rectangle's pixel centres
    dy = np.maximum(0, np.maximum(90 - yy, yy - 109))
    assert np.array_equal(grow(rect, 25.0), dx**2 + dy**2 <= 625)


def test_grow_zero_and_empty_are_identity() -> None:
    mask = disc(50, (20, 20), 8) > 0
    same = grow(mask, 0)
    assert same.dtype == bool and np.array_equal(same, mask) and same is not mask
    empty = np.zeros((30, 30), bool)
    assert not grow(empty, 5.0).any()


def test_outline_of_discs_merged_by_growing() -> None:
    mask = (disc(120, (35, 60), 20) | disc(120, (85, 60), 20)) > 0
    apart = outline(mask)
    assert len(apart) == 2
    merged = outline(grow(mask, 6.0))
    assert len(merged) == 1
    assert_valid(merged[0])
    assert polygon_area(merged[0]) == pytest.approx(np.count_nonzero(grow(mask, 6.0)), rel=0.02)
    assert outline(np.zeros((10, 10), bool)) == []


def test_outline_keeps_holes_and_islands_apart() -> None:
    mask = np.zeros((60, 60), bool)
    mask[5:55, 5:55] = True
    mask[15:45, 15:45] = False
    mask[25:35, 25:35] = True
    frame, island = outline(mask, simplify_px=0)
    assert len(frame.holes) == 1 and island.holes == []
    assert polygon_area(island) == pytest.approx(100)
    assert polygon_area(frame) == pytest.approx(50 * 50 - 30 * 30 + 4 / 8)


@pytest.mark.parametrize("seed", [3, 6, 7, 10])
def test_regions_match_the_synthetic_ground_truth(seed: int) -> None:
    photo = generate_photo(seed, size=256, with_marker=True)
    regions: list[Region] = find_regions(photo.mask, range(1, 4))
    truth = photo.entry["patches"]
    assert truth and len(regions) == len(truth)
    for region, patch in zip(regions, truth, strict=True):
        assert DEFAULT_TAXONOMY.names[region.class_id] == patch["class"]
        assert region.area_px == patch["area_px"]
        assert list(region.bbox) == patch["bbox"]
        assert_valid(region.polygon)
    for region in find_regions(photo.mask, range(1, 4), simplify_px=0):
        assert_valid(region.polygon, simplified=False)
        assert region.area_px <= polygon_area(region.polygon) <= region.area_px * 1.05
