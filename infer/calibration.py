"""Scale calibration: an ArUco marker of known size in the photo, a scale typed in, or none.

The marker is found with OpenCV's `cv2.aruco.ArucoDetector` (subpixel corner refinement) on a copy
of the photo shrunk by an integer factor to a long side of at most `DETECT_LONG_SIDE` px (with
ArUco3's fast search when that copy is over `FAST_SEARCH_PX`), so a 12-MP photo takes ~40 ms.
The corners are then refined at full resolution: `cv2.cornerSubPix`, and finally a straight line
fitted through subpixel edge points (the 50 % crossing between ink and paper) along the middle
76 % of each side, the corners being the intersections of adjacent lines. The edge fit removes
the inward bias that cornerSubPix shows on blurred corners (about 1 % of the scale on a 25 px
marker); mm_per_pixel = side_mm / mean side length.

Coordinates follow the plan report (`schema`) and OpenCV: x right, y down, the centre of the
pixel in row i, column j at (j, i).
"""

from __future__ import annotations

import cv2
import numpy as np

from dermaseg.infer import schema
from dermaseg.infer import warning_codes as codes

DEFAULT_DICTIONARY = "DICT_4X4_50"
DEFAULT_SIDE_MM = 20.0
DETECT_LONG_SIDE = 1600  # px: detection runs on a copy this large at most
FAST_SEARCH_PX = 1000  # detection copies longer than this use ArUco3 (unreliable on small ones)
MIN_MARKER_FRACTION = 0.02  # ArUco3 search: smallest marker relative to the photo (see _detector)
TILT_TOLERANCE = 0.10  # relative spread of the four side lengths above which areas will be off
EDGE_SPAN = (0.12, 0.88)  # part of each side whose edge points are fitted (corners are rounded)
MIN_EDGE_CONTRAST = 20.0  # grey levels between ink and paper for an edge sample to count


def dictionary_names() -> list[str]:
    """The predefined ArUco dictionaries this OpenCV knows (e.g. DICT_4X4_50)."""
    return sorted(name for name in dir(cv2.aruco) if name.startswith("DICT_"))


def manual_calibration(mm_per_pixel: float) -> schema.Calibration:
    """A scale typed in by the user."""
    if not mm_per_pixel > 0:
        raise ValueError(f"mm_per_pixel must be > 0, got {mm_per_pixel}")
    return schema.Calibration(method="manual", mm_per_pixel=float(mm_per_pixel))


def uncalibrated(warning: schema.PlanWarning | None = None) -> schema.Calibration:
    """No scale: areas stay in pixels (the `uncalibrated` warning unless another is given)."""
    return schema.Calibration(
        method="none", mm_per_pixel=None, warnings=[warning or codes.warning("uncalibrated")]
    )


def detect_marker(
    rgb: np.ndarray,
    side_mm: float = DEFAULT_SIDE_MM,
    dictionary: str = DEFAULT_DICTIONARY,
    marker_id: int | None = None,
) -> schema.Calibration:
    """Find an ArUco marker whose black square is `side_mm` wide and derive mm per pixel.

    With several markers, the one with `marker_id` is used, else the largest (a warning says
    which). A tilted marker (side lengths more than 10 % apart) gives a warning: the photo is not
    square-on, so areas will be off. No usable marker gives method "none" and a warning.
    """
    if not side_mm > 0:
        raise ValueError(f"side_mm must be > 0, got {side_mm}")
    _detector(dictionary)  # validates the name before any work
    gray = _gray(rgb)
    height, width = gray.shape
    factor = -(-max(height, width) // DETECT_LONG_SIDE)  # integer: INTER_AREA is fast then
    small = gray
    if factor > 1:
        size = (max(1, width // factor), max(1, height // factor))
        small = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    detector = _detector(dictionary, fast=max(small.shape) > FAST_SEARCH_PX)
    found, ids, _ = detector.detectMarkers(small)
    candidates = [] if ids is None else list(zip(ids.ravel().tolist(), found, strict=True))
    warnings: list[schema.PlanWarning] = []
    if marker_id is not None:
        candidates = [(i, c) for i, c in candidates if i == marker_id]
    if not candidates:
        wanted = dictionary if marker_id is None else f"{dictionary} id {marker_id}"
        return uncalibrated(codes.warning("no-marker", dictionary=wanted))
    # corners back to full-resolution pixel-centre coordinates
    corners = [
        (
            i,
            (c.reshape(4, 2).astype(np.float64) + 0.5)
            * (np.array([width, height]) / small.shape[::-1])
            - 0.5,
        )
        for i, c in candidates
    ]
    chosen_id, chosen = max(corners, key=lambda item: cv2.contourArea(item[1].astype(np.float32)))
    if len(corners) > 1:
        how = "the requested id" if marker_id is not None else "the largest"
        ids = sorted(i for i, _ in corners)
        warnings.append(
            codes.warning("several-markers", count=len(corners), ids=ids, chosen=chosen_id, how=how)
        )
    refined = refine_corners(gray, chosen)
    sides = np.linalg.norm(refined - np.roll(refined, -1, axis=0), axis=1)
    spread = (sides.max() - sides.min()) / sides.mean()
    if spread > TILT_TOLERANCE:
        warnings.append(codes.warning("marker-tilted", percent=100 * spread))
    marker = schema.Marker(
        dictionary=dictionary,
        id=int(chosen_id),
        side_mm=float(side_mm),
        corners_px=[(float(x), float(y)) for x, y in refined],
        side_lengths_px=[float(s) for s in sides],
    )
    return schema.Calibration(
        method="marker",
        mm_per_pixel=float(side_mm / sides.mean()),
        marker=marker,
        warnings=warnings,
    )


def refine_corners(gray: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Full-resolution corners [4, 2] (pixel centres at integers) of a marker's black square.

    cornerSubPix first (window about 0.7 of a marker cell), then the edge-line fit; the fit is
    kept only when every side yields enough edge points and no corner moves more than a cell.
    """
    corners = np.asarray(corners, np.float64).reshape(4, 2)
    cell = _mean_side(corners) / 6.0  # 4x4 bits plus a one-cell black border
    x0, y0, x1, y1 = _window(corners, 2.5 * cell + 4, gray.shape)
    crop = gray[y0:y1, x0:x1]
    origin = np.array([x0, y0], np.float64)
    local = corners - origin
    half = int(np.clip(round(0.7 * cell), 2, 25))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.01)
    points = local.astype(np.float32).reshape(-1, 1, 2)
    local = cv2.cornerSubPix(crop, points, (half, half), (-1, -1), criteria).reshape(4, 2)
    local = local.astype(np.float64)
    fitted = _fit_edges(crop.astype(np.float32), local, cell)
    if fitted is not None and np.abs(fitted - local).max() <= cell:
        local = fitted
    return local + origin


def marker_polygon_mask(
    calibration: schema.Calibration, shape: tuple[int, int], pad_px: int | None = None
) -> np.ndarray | None:
    """Bool [H, W] mask of the marker's black square grown by `pad_px` on every side, or None
    without a marker. Default pad: half the side plus 2 px, which covers a white border of 3
    cells (the synthetic and printed dermaseg stickers) and its anti-aliased edge."""
    if calibration.marker is None:
        return None
    corners = np.asarray(calibration.marker.corners_px, np.float64)
    if pad_px is None:
        pad_px = int(np.ceil(0.5 * _mean_side(corners))) + 2
    outline = _offset_polygon(corners, float(pad_px))
    mask = np.zeros(shape, np.uint8)
    shift = 4
    cv2.fillPoly(mask, [np.round(outline * (1 << shift)).astype(np.int32)], 1, cv2.LINE_8, shift)
    return mask.astype(bool)


def _detector(dictionary: str, fast: bool = False) -> cv2.aruco.ArucoDetector:
    names = dictionary_names()
    if dictionary not in names:
        raise ValueError(f"unknown ArUco dictionary {dictionary!r}; choose from {', '.join(names)}")
    params = cv2.aruco.DetectorParameters()
    params.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    # ArUco3's fast search (Romero-Ramirez et al. 2018): markers at least MIN_MARKER_FRACTION of
    # the photo; hair and texture otherwise give hundreds of candidate outlines to decode
    # (used on detection images over FAST_SEARCH_PX, where it is reliable)
    params.useAruco3Detection = fast
    params.minMarkerLengthRatioOriginalImg = MIN_MARKER_FRACTION if fast else 0.0
    return cv2.aruco.ArucoDetector(
        cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)), params
    )


def _gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        return np.ascontiguousarray(rgb, np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _mean_side(corners: np.ndarray) -> float:
    return float(np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1).mean())


def _window(
    corners: np.ndarray, margin: float, shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    low = np.floor(corners.min(axis=0) - margin).astype(int)
    high = np.ceil(corners.max(axis=0) + margin).astype(int) + 1
    height, width = shape[:2]
    return max(0, low[0]), max(0, low[1]), min(width, high[0]), min(height, high[1])


def _fit_edges(gray: np.ndarray, corners: np.ndarray, cell: float) -> np.ndarray | None:
    """Corners as intersections of lines fitted to subpixel edge points of the four sides.

    Along each side, intensity profiles across the edge (inside 0.75 cell: the black border;
    outside 1.5 cells: the white margin) are sampled bilinearly; the edge point is where a
    profile first crosses halfway between its ink and paper levels.
    """
    centre = corners.mean(axis=0)
    step = max(0.25, cell / 16.0)
    across = np.arange(-max(1.0, 0.75 * cell), max(2.0, 1.5 * cell) + 1e-6, step)
    level_n = max(2, round(0.25 * cell / step))
    lines = []
    for k in range(4):
        start, end = corners[k], corners[(k + 1) % 4]
        length = float(np.linalg.norm(end - start))
        if length < 4:
            return None
        along_dir = (end - start) / length
        normal = np.array([-along_dir[1], along_dir[0]])
        if np.dot(normal, (start + end) / 2 - centre) < 0:
            normal = -normal
        count = int(np.clip(length * (EDGE_SPAN[1] - EDGE_SPAN[0]), 8, 200))
        along = np.linspace(EDGE_SPAN[0] * length, EDGE_SPAN[1] * length, count)
        points = start + along[:, None, None] * along_dir + across[None, :, None] * normal
        profiles = cv2.remap(
            gray,
            points[..., 0].astype(np.float32),
            points[..., 1].astype(np.float32),
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        ink = profiles[:, :level_n].mean(axis=1, keepdims=True)
        paper = profiles[:, -level_n:].mean(axis=1, keepdims=True)
        contrast = paper - ink
        norm = (profiles - ink) / np.maximum(contrast, 1e-6)
        above = norm >= 0.5
        first = np.argmax(above, axis=1)
        good = (contrast[:, 0] >= MIN_EDGE_CONTRAST) & above.any(axis=1) & (first > 0)
        if good.sum() < max(5, count // 3):
            return None
        rows, j = np.flatnonzero(good), first[good]
        before, after = norm[rows, j - 1], norm[rows, j]
        offset = across[j - 1] + step * (0.5 - before) / np.maximum(after - before, 1e-6)
        edge = start + along[rows, None] * along_dir + offset[:, None] * normal
        vx, vy, px, py = cv2.fitLine(edge.astype(np.float32), cv2.DIST_HUBER, 0, 0.01, 0.01).ravel()
        lines.append((np.array([px, py], np.float64), np.array([vx, vy], np.float64)))
    out = np.empty((4, 2))
    for k in range(4):
        (p1, d1), (p2, d2) = lines[k - 1], lines[k]
        system = np.array([d1, -d2]).T
        if abs(np.linalg.det(system)) < 1e-6:
            return None
        t = np.linalg.solve(system, p2 - p1)
        out[k] = p1 + t[0] * d1
    return out


def _offset_polygon(corners: np.ndarray, pad: float) -> np.ndarray:
    """A convex quadrilateral with every edge moved outwards by `pad` (mitred corners)."""
    centre = corners.mean(axis=0)
    lines = []
    for k in range(4):
        start, end = corners[k], corners[(k + 1) % 4]
        direction = (end - start) / max(np.linalg.norm(end - start), 1e-9)
        normal = np.array([-direction[1], direction[0]])
        if np.dot(normal, (start + end) / 2 - centre) < 0:
            normal = -normal
        lines.append((start + pad * normal, direction))
    out = np.empty((4, 2))
    for k in range(4):
        (p1, d1), (p2, d2) = lines[k - 1], lines[k]
        system = np.array([d1, -d2]).T
        if abs(np.linalg.det(system)) < 1e-9:
            out[k] = corners[k]
            continue
        out[k] = p1 + np.linalg.solve(system, p2 - p1)[0] * d1
    return out
