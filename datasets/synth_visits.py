"""Two visits of one synthetic skin scene with exact truth: a known change and a known camera move.

Visit A is a skin scene with vitiligo patches placed in the middle of the photo (clear of the
marker, when there is one). Visit B is the same scene after a known change: one patch grown, one
shrunk (repigmented), one unchanged, one cleared, and one new patch. Both are rendered from the
same texture seed, so pores, creases and moles match (lighting, camera noise and the JPEG differ,
as they would), and B is then photographed from another place: a known homography (rotation,
zoom, perspective tilt and shift) maps A's pixel coordinates to B's.

The truth is given in A's pixels: the scene masks of both visits (before the camera move), the
homography, the part of A's frame that B sees, and the area per change category and per patch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.datasets.synth_render import render
from dermaseg.datasets.synth_scene import VITILIGO, Scene, _reserved, sample_scene
from dermaseg.datasets.synth_shapes import fill_polygon, polar_blob

# what happens to each of A's patches at visit B (in this order), then one new patch
CHANGES = ("grown", "shrunk", "unchanged", "cleared")
CHANGE_PX = 0.045  # growth / shrinkage as a share of the photo's short side
PATCH_GAP = 0.06  # clearance between patches (after growth) as a share of the short side


@dataclass(frozen=True)
class CameraMove:
    """Where visit B's camera stood relative to A's: in-plane rotation (degrees), zoom (B pixels
    per A pixel), perspective tilt (horizontal and vertical, as the relative change in scale
    across the photo) and a shift (share of the photo's size)."""

    rotation_deg: float = 0.0
    scale: float = 1.0
    tilt: tuple[float, float] = (0.0, 0.0)
    shift: tuple[float, float] = (0.0, 0.0)

    def homography(self, width: int, height: int) -> np.ndarray:
        """3x3 matrix mapping A's pixel coordinates (x, y, 1) to B's, about the photo centre."""
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
        angle = np.radians(self.rotation_deg)
        c, s = np.cos(angle), np.sin(angle)
        similarity = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)
        similarity[:2, :2] *= self.scale
        tilt = np.eye(3)
        tilt[2, 0] = self.tilt[0] / width
        tilt[2, 1] = self.tilt[1] / height
        back = np.array(
            [[1, 0, cx + self.shift[0] * width], [0, 1, cy + self.shift[1] * height], [0, 0, 1]],
            np.float64,
        )
        matrix = back @ similarity @ tilt @ to_centre
        return matrix / matrix[2, 2]


@dataclass(frozen=True)
class VisitPair:
    rgb_a: np.ndarray  # uint8 [H, W, 3] visit A, before JPEG
    mask_a: np.ndarray  # uint8 [H, W] class ids in A's photo
    rgb_b: np.ndarray  # visit B as photographed (after the camera move)
    mask_b: np.ndarray  # class ids in B's photo (the scene mask moved with nearest neighbour)
    truth: dict  # see visit_pair


def warp(image: np.ndarray, homography: np.ndarray, size: tuple[int, int], nearest: bool = False):
    """`image` (A's frame) as seen by a camera whose pixels are `homography` @ A's pixels."""
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpPerspective(
        image, homography, size, flags=flags, borderMode=cv2.BORDER_REFLECT_101
    )


def seen_by_b(homography: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bool [H, W] of A's pixels whose centre lands inside B's photo."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
    mapped = cv2.perspectiveTransform(points, homography).reshape(height, width, 2)
    return (
        (mapped[..., 0] >= -0.5)
        & (mapped[..., 0] <= width - 0.5)
        & (mapped[..., 1] >= -0.5)
        & (mapped[..., 1] <= height - 0.5)
    )


def _patches(rng: np.random.Generator, scene: Scene, count: int) -> list[np.ndarray]:
    """`count` separate blob masks in the middle 64 % of the photo, clear of the marker."""
    height, width = scene.mask.shape
    short = min(height, width)
    reserved = np.zeros((height, width), np.uint8)
    if scene.marker is not None:
        reserved = _reserved((height, width), scene.marker)
    gap = round(PATCH_GAP * short)
    keep_out = cv2.dilate(reserved, np.ones((2 * gap + 1,) * 2, np.uint8))
    blobs: list[np.ndarray] = []
    for attempt in range(600):
        if len(blobs) == count:
            break
        radius = short * rng.uniform(0.06, 0.09) * (1.0 - attempt / 1200)  # smaller if crowded
        centre = rng.uniform((0.18 * width, 0.18 * height), (0.82 * width, 0.82 * height))
        blob = fill_polygon((height, width), polar_blob(rng, centre, radius, 0.2, 1.0))
        if (blob & keep_out).any():
            continue
        blobs.append(blob.astype(bool))
        keep_out |= cv2.dilate(blob, np.ones((2 * gap + 1,) * 2, np.uint8))
    if len(blobs) < count:
        raise ValueError("could not place the visit patches; use a larger photo")
    return blobs


def visit_pair(
    seed: int,
    size: tuple[int, int] = (384, 320),
    move: CameraMove = CameraMove(),
    with_marker: bool = False,
) -> VisitPair:
    """Two visits of one scene; `truth` holds, in A's pixels: `homography` (A -> B), `mm_per_pixel`
    (A's scale; B's is this divided by the zoom at the centre), `seen` (bool mask of A's pixels
    that B shows), `scene_mask_b` (B's mask in A's frame), `areas_px` per category (new, grown,
    shrunk, cleared, unchanged: pixels of A's frame seen by B) and `patches` (A's patch number ->
    change and areas before/after, None for the new patch)."""
    width, height = size
    rng = np.random.default_rng(seed)
    base = sample_scene(rng, width, height, "skin", with_marker)
    blobs = _patches(rng, base, len(CHANGES) + 1)
    short = min(width, height)
    step = max(2, round(CHANGE_PX * short))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * step + 1,) * 2)
    mask_a = np.zeros((height, width), np.uint8)
    mask_b = np.zeros((height, width), np.uint8)
    for blob, change in zip(blobs, CHANGES, strict=False):
        mask_a[blob] = VITILIGO
        later = blob.view(np.uint8)
        if change == "grown":
            later = cv2.dilate(later, disc)
        elif change == "shrunk":
            later = cv2.erode(later, disc)
        elif change == "cleared":
            later = np.zeros_like(later)
        mask_b[later > 0] = VITILIGO
    mask_b[blobs[-1]] = VITILIGO  # the new patch
    render_seed = int(rng.integers(2**31))
    scene_a = dataclasses.replace(base, mask=mask_a)
    scene_b = dataclasses.replace(base, mask=mask_b)
    rgb_a = render(np.random.default_rng(render_seed), scene_a).rgb
    rgb_b_scene = render(np.random.default_rng(render_seed), scene_b).rgb
    homography = move.homography(width, height)
    rgb_b = warp(rgb_b_scene, homography, (width, height))
    photo_mask_b = warp(mask_b, homography, (width, height), nearest=True)
    seen = seen_by_b(homography, width, height)
    a, b = (mask_a == VITILIGO) & seen, (mask_b == VITILIGO) & seen
    new_blob = blobs[-1] & seen
    areas = {
        "new": int(np.count_nonzero(new_blob)),
        "grown": int(np.count_nonzero(b & ~a & ~new_blob)),
        "shrunk": int(np.count_nonzero(a & ~b & ~(blobs[3] & seen))),
        "cleared": int(np.count_nonzero(blobs[3] & seen)),
        "unchanged": int(np.count_nonzero(a & b)),
    }
    patches = {}
    numbered = _plan_order(mask_a, blobs[: len(CHANGES)])
    _, components = cv2.connectedComponents((mask_b == VITILIGO).view(np.uint8), None, 8)
    for number, index in enumerate(numbered, start=1):
        overlapping = np.unique(components[blobs[index] & (components > 0)])
        later = np.isin(components, overlapping)  # B's patches that overlap this A patch
        patches[number] = {
            "change": CHANGES[index],
            "before_px": int(np.count_nonzero(blobs[index] & seen)),
            "after_px": int(np.count_nonzero(later & seen)),
        }
    truth = {
        "homography": homography.tolist(),
        "mm_per_pixel": base.mm_per_pixel,
        "seen": seen,
        "scene_mask_b": mask_b,
        "areas_px": areas,
        "patches": patches,
        "move": dataclasses.asdict(move),
    }
    return VisitPair(rgb_a, mask_a, rgb_b, photo_mask_b, truth)


def _plan_order(mask: np.ndarray, blobs: list[np.ndarray]) -> list[int]:
    """Indices of `blobs` in the order a plan numbers the patches of `mask` (the label order of
    cv2.connectedComponentsWithStats, as `geometry.find_regions`)."""
    _, labels, _, _ = cv2.connectedComponentsWithStats((mask > 0).view(np.uint8), connectivity=8)
    label_of = [int(labels[blob][0]) for blob in blobs]
    return sorted(range(len(blobs)), key=lambda i: label_of[i])


def other_scene(seed: int, size: tuple[int, int] = (384, 320)) -> np.ndarray:
    """A photo of a different skin scene (for refusal tests)."""
    width, height = size
    rng = np.random.default_rng(seed)
    scene = sample_scene(rng, width, height, "skin", False)
    return render(rng, scene).rgb
