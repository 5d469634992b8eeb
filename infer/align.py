"""Visit alignment: the homography that maps visit A's pixels onto visit B's photo.

Two sources, both OpenCV:

* the ArUco marker, when both photos have one: the four corners give a homography directly
  (`cv2.getPerspectiveTransform`). It aligns the skin only if the sticker sat at the same place on
  the skin at both visits, so it is used as a guide and a fallback, not trusted alone;
* skin features: ORB keypoints (oriented FAST + rotated BRIEF, scale pyramid) on both photos, the
  lesions and the marker left out (they change or move), matched with Lowe's ratio test, then a
  homography fitted with RANSAC (`cv2.USAC_MAGSAC`). With a marker homography, only matches it
  roughly agrees with are kept before the fit. A second pass warps B onto A with that
  homography, matches again (same scale and orientation now, so many more matches) and fits the
  small correction.

The alignment is refused (`AlignmentError`) when too few matches agree (fewer than
`MIN_INLIERS`, or under `MIN_INLIER_RATIO` of the ratio-test matches), when the agreeing
matches still miss the fitted homography by more than `MAX_REPROJECTION_PX` (RMS, in A's
pixels at the working size), when B would show less than `MIN_OVERLAP` of A's photo, or when the
zoom is implausible. Photos of different scenes fail the first test: random matches do not agree
on one homography. An alignment from the marker alone (skin features failed) must also show
skin texture that correlates (band-passed, normalised) at least `MARKER_ONLY_SIMILARITY` once
aligned: two sites with the sticker at the same place in the frame are refused.

Coordinates: OpenCV pixel centres (x right, y down), as in the plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from dermaseg.errors import DermasegError

WORK_LONG_SIDE = 1024  # features are found on copies at most this large
ORB_FEATURES = 6000
RATIO = 0.8  # Lowe's ratio test
RANSAC_PX = 3.0  # inlier threshold at the working size
MIN_INLIERS = 25
MIN_INLIER_RATIO = 0.15
MAX_REPROJECTION_PX = 2.0  # RMS of inliers at the working size
MIN_OVERLAP = 0.25
ZOOM_RANGE = (0.25, 4.0)
MARKER_GUIDE = 0.04  # matches further than this share of the diagonal from the marker's map drop
MARKER_DISAGREE = 0.02  # marker and feature maps further apart than this share: a warning
MIN_SIMILARITY = 0.2  # normalised correlation of aligned texture below which sites may differ
MARKER_ONLY_SIMILARITY = 0.3  # ... and below which a marker-only alignment is refused
SIMILARITY_CLEARANCE_PX = 12  # texture this close to a lesion or the marker is left out


class AlignmentError(DermasegError):
    """The two photos cannot be aligned well enough for a change map."""


@dataclass(frozen=True)
class Alignment:
    homography: np.ndarray  # 3x3, A's pixels -> B's pixels
    method: str  # "features", "marker+features" or "marker"
    matches: int  # ratio-test matches (after the marker guide)
    inliers: int
    inlier_ratio: float
    reprojection_px: float | None  # RMS of inliers, A's pixels (None: aligned on the marker)
    overlap: float  # share of A's photo that B shows
    zoom: float  # B's pixels per A's pixel at A's centre
    similarity: float  # normalised correlation of the aligned photos' fine texture
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "method": self.method,
            "homography_a_to_b": [[round(float(v), 8) for v in row] for row in self.homography],
            "matches": self.matches,
            "inliers": self.inliers,
            "inlier_ratio": round(self.inlier_ratio, 4),
            "reprojection_rms_px": None
            if self.reprojection_px is None
            else round(self.reprojection_px, 3),
            "overlap": round(self.overlap, 4),
            "zoom_b_per_a": round(self.zoom, 5),
            "texture_similarity": round(self.similarity, 4),
            "thresholds": {
                "min_inliers": MIN_INLIERS,
                "min_inlier_ratio": MIN_INLIER_RATIO,
                "max_reprojection_rms_px": MAX_REPROJECTION_PX,
                "min_overlap": MIN_OVERLAP,
                "min_texture_similarity": MIN_SIMILARITY,
                "min_texture_similarity_marker_only": MARKER_ONLY_SIMILARITY,
            },
        }


def marker_homography(corners_a, corners_b) -> np.ndarray:
    """Homography A -> B from the two markers' four corners (same corner order in both)."""
    a = np.asarray(corners_a, np.float32).reshape(4, 2)
    b = np.asarray(corners_b, np.float32).reshape(4, 2)
    return cv2.getPerspectiveTransform(a, b).astype(np.float64)


def local_zoom(homography: np.ndarray, x: float, y: float) -> float:
    """sqrt |det J| of the homography at (x, y): B's pixels per A's pixel there (linear)."""
    h = homography
    w = h[2, 0] * x + h[2, 1] * y + h[2, 2]
    u = h[0, 0] * x + h[0, 1] * y + h[0, 2]
    v = h[1, 0] * x + h[1, 1] * y + h[1, 2]
    jacobian = np.array(
        [
            [(h[0, 0] * w - u * h[2, 0]) / w**2, (h[0, 1] * w - u * h[2, 1]) / w**2],
            [(h[1, 0] * w - v * h[2, 0]) / w**2, (h[1, 1] * w - v * h[2, 1]) / w**2],
        ]
    )
    return float(np.sqrt(abs(np.linalg.det(jacobian))))


def to_a(image_b: np.ndarray, homography: np.ndarray, shape_a: tuple[int, int], nearest: bool):
    """B's image resampled onto A's pixel grid (outside B's photo: 0)."""
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    height, width = shape_a
    return cv2.warpPerspective(
        image_b, homography, (width, height), flags=flags, borderMode=cv2.BORDER_CONSTANT
    )


def seen_in_b(homography: np.ndarray, shape_a: tuple[int, int], shape_b: tuple[int, int]):
    """Bool [H, W] of A's pixels whose centre lands inside B's photo."""
    height_b, width_b = shape_b
    inside = np.ones((height_b, width_b), np.uint8)
    return to_a(inside, homography, shape_a, nearest=True) > 0


def _scaling(factor: float) -> np.ndarray:
    """Full-size pixel centres -> working-size pixel centres for a resize by `factor`."""
    offset = 0.5 * factor - 0.5
    return np.array([[factor, 0, offset], [0, factor, offset], [0, 0, 1]], np.float64)


def _work(rgb: np.ndarray, skip: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    """Grey working copy (contrast-equalised), its feature mask and the resize factor."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    factor = min(1.0, WORK_LONG_SIDE / max(gray.shape))
    allowed = np.full(gray.shape, 255, np.uint8)
    if skip is not None:
        allowed[np.asarray(skip, bool)] = 0
    if factor < 1.0:
        size = (round(gray.shape[1] * factor), round(gray.shape[0] * factor))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
        allowed = cv2.resize(allowed, size, interpolation=cv2.INTER_NEAREST)
    gray = cv2.createCLAHE(clipLimit=2.0, tileGridSize=(8, 8)).apply(gray)
    allowed = cv2.erode(allowed, np.ones((15, 15), np.uint8))  # keep clear of lesion borders
    return gray, allowed, factor


def _features(gray: np.ndarray, allowed: np.ndarray):
    orb = cv2.ORB_create(nfeatures=ORB_FEATURES, scaleFactor=1.2, nlevels=8, fastThreshold=7)
    return orb.detectAndCompute(gray, allowed)


def _ratio_matches(desc_a, desc_b) -> list:
    if desc_a is None or desc_b is None or len(desc_a) < 2 or len(desc_b) < 2:
        return []
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(desc_a, desc_b, k=2)
    return [p[0] for p in pairs if len(p) == 2 and p[0].distance < RATIO * p[1].distance]


def _similarity(gray_a: np.ndarray, gray_b_on_a: np.ndarray, valid: np.ndarray) -> float:
    """Normalised correlation of band-passed (difference of Gaussians) texture over `valid`."""
    if np.count_nonzero(valid) < 100:
        return 0.0

    def band(image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32)
        return cv2.GaussianBlur(image, (0, 0), 1.0) - cv2.GaussianBlur(image, (0, 0), 4.0)

    a, b = band(gray_a)[valid], band(gray_b_on_a)[valid]
    a, b = a - a.mean(), b - b.mean()
    denominator = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return 0.0 if denominator == 0 else float((a * b).sum() / denominator)


def align(
    rgb_a: np.ndarray,
    rgb_b: np.ndarray,
    *,
    skip_a: np.ndarray | None = None,
    skip_b: np.ndarray | None = None,
    marker_a=None,
    marker_b=None,
) -> Alignment:
    """Align visit B onto visit A (see the module docstring). `skip_*`: bool masks of pixels
    that are no use for alignment (lesions, the marker); `marker_*`: marker corners [4, 2] or
    None. Raises AlignmentError with the reason when the alignment is poor."""
    gray_a, allowed_a, fa = _work(rgb_a, skip_a)
    gray_b, allowed_b, fb = _work(rgb_b, skip_b)
    to_work_a, to_work_b = _scaling(fa), _scaling(fb)
    prior = None
    if marker_a is not None and marker_b is not None:
        prior = to_work_b @ marker_homography(marker_a, marker_b) @ np.linalg.inv(to_work_a)
    kp_a, desc_a = _features(gray_a, allowed_a)
    kp_b, desc_b = _features(gray_b, allowed_b)
    matches = _ratio_matches(desc_a, desc_b)
    points_a = np.float32([kp_a[m.queryIdx].pt for m in matches]).reshape(-1, 2)
    points_b = np.float32([kp_b[m.trainIdx].pt for m in matches]).reshape(-1, 2)
    if prior is not None and len(matches):
        expected = cv2.perspectiveTransform(points_a.reshape(-1, 1, 2), prior).reshape(-1, 2)
        near = np.linalg.norm(expected - points_b, axis=1) < MARKER_GUIDE * np.hypot(*gray_b.shape)
        points_a, points_b = points_a[near], points_b[near]
    warnings: list[str] = []
    fitted, inliers, rms = _fit(points_a, points_b)
    count = len(points_a)
    ratio = inliers / count if count else 0.0
    problems = _problems(inliers, ratio, rms)
    if problems and prior is None:
        raise AlignmentError(
            "the photos cannot be aligned: "
            + "; ".join(problems)
            + ". They may show different sites, or the skin shows too little texture; photograph "
            "the same area, with the marker at the same place on the skin"
        )
    if problems:
        work = prior
        method = "marker"
        warnings.append(
            "aligned from the marker alone (skin features: "
            + "; ".join(problems)
            + "): right only if the sticker sat at the same place on the skin at both visits"
        )
    else:
        work = _refine(gray_a, allowed_a, gray_b, fitted)
        method = "features" if prior is None else "marker+features"
        if prior is not None:
            gap = _disagreement(prior, fitted, gray_a.shape) / np.hypot(*gray_a.shape)
            if gap > MARKER_DISAGREE:
                warnings.append(
                    f"the marker and the skin disagree on the alignment by {100 * gap:.1f} % of "
                    "the photo: the sticker was probably placed elsewhere; the skin was used"
                )
    homography = np.linalg.inv(to_work_b) @ work @ to_work_a
    homography /= homography[2, 2]
    shape_a, shape_b = rgb_a.shape[:2], rgb_b.shape[:2]
    seen = seen_in_b(homography, shape_a, shape_b)
    overlap = float(seen.mean())
    zoom = local_zoom(homography, (shape_a[1] - 1) / 2, (shape_a[0] - 1) / 2)
    if overlap < MIN_OVERLAP or not ZOOM_RANGE[0] <= zoom <= ZOOM_RANGE[1]:
        raise AlignmentError(
            f"the photos cannot be aligned: the second shows {100 * overlap:.0f} % of the first "
            f"at {zoom:.2f}x its scale (need at least {100 * MIN_OVERLAP:.0f} % at "
            f"{ZOOM_RANGE[0]}-{ZOOM_RANGE[1]}x); they may show different sites"
        )
    valid = seen.copy()
    for skip in (
        skip_a,
        None if skip_b is None else to_a(skip_b.view(np.uint8), homography, shape_a, True) > 0,
    ):
        if skip is not None:
            valid &= ~np.asarray(skip, bool)
    full_a = cv2.cvtColor(rgb_a, cv2.COLOR_RGB2GRAY)
    b_on_a = to_a(cv2.cvtColor(rgb_b, cv2.COLOR_RGB2GRAY), homography, shape_a, nearest=False)
    clear = cv2.erode(valid.view(np.uint8), np.ones((2 * SIMILARITY_CLEARANCE_PX + 1,) * 2))
    similarity = _similarity(full_a, b_on_a, clear > 0)
    if method == "marker" and similarity < MARKER_ONLY_SIMILARITY:
        raise AlignmentError(
            f"the photos do not show the same skin: aligned on the marker, their texture "
            f"correlates {similarity:.2f} (need {MARKER_ONLY_SIMILARITY}); they may show "
            "different sites"
        )
    if similarity < MIN_SIMILARITY:
        warnings.append(
            f"the aligned photos' skin texture correlates only {similarity:.2f}: they may show "
            "different sites, or the light or focus changed a lot"
        )
    scale_rms = rms / fa if method != "marker" else None
    return Alignment(
        homography=homography,
        method=method,
        matches=count,
        inliers=inliers,
        inlier_ratio=ratio,
        reprojection_px=scale_rms,
        overlap=overlap,
        zoom=zoom,
        similarity=similarity,
        warnings=warnings,
    )


def _refine(
    gray_a: np.ndarray, allowed_a: np.ndarray, gray_b: np.ndarray, first: np.ndarray
) -> np.ndarray:
    """Second pass: B warped onto A with the first homography (now at A's scale and
    orientation, so far more features match), matched to A again, and the small correction
    fitted; the first homography is kept when the second pass does not pass the same tests."""
    height, width = gray_a.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    b_on_a = cv2.warpPerspective(gray_b, first, (width, height), flags=flags)
    covered = cv2.warpPerspective(
        np.full(gray_b.shape, 255, np.uint8), first, (width, height), flags=flags
    )
    allowed = cv2.bitwise_and(allowed_a, cv2.erode(covered, np.ones((15, 15), np.uint8)))
    kp_a, desc_a = _features(gray_a, allowed)
    kp_b, desc_b = _features(b_on_a, allowed)
    matches = _ratio_matches(desc_a, desc_b)
    points_a = np.float32([kp_a[m.queryIdx].pt for m in matches]).reshape(-1, 2)
    points_b = np.float32([kp_b[m.trainIdx].pt for m in matches]).reshape(-1, 2)
    correction, inliers, rms = _fit(points_a, points_b)
    count = len(points_a)
    if correction is None or _problems(inliers, inliers / max(count, 1), rms):
        return first
    if _disagreement(np.eye(3), correction, gray_a.shape) > 0.05 * np.hypot(height, width):
        return first  # a second pass should only nudge
    return first @ correction


def _fit(points_a: np.ndarray, points_b: np.ndarray) -> tuple[np.ndarray | None, int, float]:
    """RANSAC homography, inlier count and RMS reprojection error of the inliers (work px)."""
    if len(points_a) < 4:
        return None, 0, float("inf")
    matrix, inlier_mask = cv2.findHomography(
        points_a, points_b, cv2.USAC_MAGSAC, RANSAC_PX, maxIters=5000, confidence=0.999
    )
    if matrix is None:
        return None, 0, float("inf")
    keep = inlier_mask.ravel().astype(bool)
    if not keep.any():
        return None, 0, float("inf")
    mapped = cv2.perspectiveTransform(points_a[keep].reshape(-1, 1, 2), matrix).reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum((mapped - points_b[keep]) ** 2, axis=1))))
    return matrix, int(keep.sum()), rms


def _problems(inliers: int, ratio: float, rms: float) -> list[str]:
    problems = []
    if inliers < MIN_INLIERS:
        problems.append(f"only {inliers} skin feature matches agree (need {MIN_INLIERS})")
    elif ratio < MIN_INLIER_RATIO:
        problems.append(
            f"only {100 * ratio:.0f} % of feature matches agree (need {100 * MIN_INLIER_RATIO:.0f})"
        )
    elif rms > MAX_REPROJECTION_PX:
        problems.append(f"matches miss by {rms:.1f} px RMS (at most {MAX_REPROJECTION_PX})")
    return problems


def _disagreement(first: np.ndarray, second: np.ndarray, shape: tuple[int, int]) -> float:
    """Largest distance between where two homographies put a 5 x 5 grid of A's points."""
    height, width = shape
    xs, ys = np.meshgrid(np.linspace(0, width - 1, 5), np.linspace(0, height - 1, 5))
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).reshape(-1, 1, 2)
    one = cv2.perspectiveTransform(grid, first).reshape(-1, 2)
    two = cv2.perspectiveTransform(grid, second).reshape(-1, 2)
    return float(np.linalg.norm(one - two, axis=1).max())
