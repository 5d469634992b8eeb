"""The photo's own skin colour as a robust Gaussian in CIELAB, to keep pigment targets on skin.

A pigment target is the colour of the skin around a patch; in a real photo that ring also
crosses hair, lips, clothes, jewellery and background. The skin model is fitted on the photo
itself: pixels that are likely skin by a broad, tone-independent chroma rule (YCrCb, Chai & Ngan
1999: Cr 133..173, Cb 77..127), that are not a patch, hair or the marker, then a Gaussian in
CIELAB fitted robustly (start from the median and MAD, then a few rounds keeping pixels within
the 97.5 % Mahalanobis quantile). A pixel is skin when its squared Mahalanobis distance is within
the 99 % quantile of chi-square with 3 degrees of freedom.

Where it is fitted. The skin that matters is the skin the patches lie on, so with `near` (the
patches) the fit uses only pixels within `NEAR_RINGS` outer ring widths of a patch (three times
the pigment ring's reach, `tone.ring_px`): the body part photographed, not whatever else in the
frame has a skin-like chroma. On real wound photos (FUSeg val) a whole-photo fit modelled the brown
wooden floor or a beige wall behind a foot, and called the foot's skin "not skin". Fewer than
`MIN_FIT_PIXELS` likely-skin pixels there (a patch on a blue dress): the whole photo is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FIT_PIXELS = 40_000  # the model is fitted on about this many sampled pixels at most
MIN_FIT_PIXELS = 200  # fewer likely-skin pixels (of the sample): no model
CR_RANGE = (133, 173)  # likely skin in YCrCb (8-bit)
CB_RANGE = (77, 127)
FIT_QUANTILE = 9.348  # chi-square(3) 97.5 %: inliers of each robust round
SKIN_QUANTILE = 11.345  # chi-square(3) 99 %: a pixel within this is skin
ROUNDS = 6
NEAR_RINGS = 3.0  # with `near`, fit within this many outer ring widths (tone.ring_px) of it
TRUNCATION = 1.0 / 0.912  # variance lost by keeping chi2(3) <= 9.348 (E[chi2_5 cdf]/cdf ratio)


@dataclass(frozen=True)
class SkinModel:
    """Mean and covariance of the photo's skin in CIELAB."""

    mean: np.ndarray  # [3]
    covariance: np.ndarray  # [3, 3]
    pixels: int  # pixels the last round was fitted on (sampled)
    spread_delta_e76: float  # 90th percentile ΔE76 of those pixels from the mean

    def distance2(self, lab: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of CIELAB pixels [..., 3] from the skin mean, float32.

        As |W (x - mean)|^2 with W^T W the inverse covariance (Cholesky), two OpenCV per-pixel
        transforms: about 20x faster than numpy's matrix product on a 1008x756 photo."""
        shape = np.shape(lab)[:-1]
        pixels = np.ascontiguousarray(lab, np.float32).reshape(-1, 1, 3)
        if pixels.size == 0:
            return np.zeros(shape, np.float32)
        whiten = np.linalg.cholesky(np.linalg.inv(self.covariance)).T
        affine = np.hstack([whiten, -(whiten @ self.mean)[:, None]]).astype(np.float32)
        white = cv2.transform(pixels, affine)
        d2 = cv2.transform(cv2.multiply(white, white), np.ones((1, 3), np.float32))
        return d2.reshape(shape)

    def is_skin(self, lab: np.ndarray) -> np.ndarray:
        """Bool [...]: CIELAB pixels [..., 3] that the model calls skin."""
        return self.distance2(lab) <= SKIN_QUANTILE


def likely_skin(rgb: np.ndarray) -> np.ndarray:
    """Bool [H, W]: the broad chroma rule for skin of any tone (YCrCb)."""
    ycrcb = cv2.cvtColor(rgb, cv2.COLOR_RGB2YCrCb)
    low = np.array([0, CR_RANGE[0], CB_RANGE[0]], np.uint8)
    high = np.array([255, CR_RANGE[1], CB_RANGE[1]], np.uint8)
    return cv2.inRange(ycrcb, low, high) > 0


def fit_skin_model(
    rgb: np.ndarray, not_skin: np.ndarray | None = None, near: np.ndarray | None = None
) -> SkinModel | None:
    """The skin model of an RGB uint8 photo [H, W, 3]; `not_skin`: bool [H, W] pixels left out
    of the fit (patches, hair, the marker); `near`: bool [H, W], the patches whose surroundings
    the model is fitted on (module notes). None when too few likely-skin pixels remain."""
    from dermaseg.infer.tone import lab_of, ring_px  # tone imports this module

    if near is not None and np.any(near):
        reach = NEAR_RINGS * ring_px(rgb.shape)[1]
        lab = _candidates(rgb, not_skin, near, reach)
        if lab is not None:
            return _robust_gaussian(lab_of(lab).astype(np.float64))
    lab = _candidates(rgb, not_skin)
    return None if lab is None else _robust_gaussian(lab_of(lab).astype(np.float64))


def _candidates(
    rgb: np.ndarray,
    not_skin: np.ndarray | None,
    near: np.ndarray | None = None,
    reach: float = 0.0,
) -> np.ndarray | None:
    """RGB [n, 3] of about FIT_PIXELS sampled likely-skin pixels, not `not_skin`, and within
    `reach` px of `near` when given; None when fewer than MIN_FIT_PIXELS."""
    height, width = rgb.shape[:2]
    area = height * width
    if near is not None:  # sample the band around `near` as densely as the whole photo would be
        coarse = max(1, int(math.sqrt(area / FIT_PIXELS)))
        area = np.count_nonzero(_within(near, coarse, reach)) * coarse**2
    stride = max(1, int(math.sqrt(area / FIT_PIXELS)))
    sample = np.ascontiguousarray(rgb[::stride, ::stride])
    candidates = likely_skin(sample)
    if not_skin is not None:
        candidates &= ~np.asarray(not_skin, bool)[::stride, ::stride]
    if near is not None:
        candidates &= _within(near, stride, reach)
    if np.count_nonzero(candidates) < MIN_FIT_PIXELS:
        return None
    return sample[candidates]


def _within(near: np.ndarray, stride: int, reach: float) -> np.ndarray:
    """Bool, on the grid of every stride-th pixel: within `reach` px of a `near` pixel."""
    near8 = np.ascontiguousarray(near, np.uint8)
    if stride > 1:  # a patch smaller than the stride still marks its grid pixel
        near8 = cv2.dilate(near8, np.ones((stride, stride), np.uint8), anchor=(0, 0))
    outside = near8[::stride, ::stride] == 0
    distance = cv2.distanceTransform(outside.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return distance * stride <= reach


def _robust_gaussian(lab: np.ndarray) -> SkinModel | None:
    """Mean and covariance of the bulk of `lab` [n, 3], outliers (hair, cloth) left out."""
    mean = np.median(lab, axis=0)
    mad = np.median(np.abs(lab - mean), axis=0) * 1.4826
    covariance = np.diag(np.maximum(mad, 1.0) ** 2)
    inliers = lab
    for _ in range(ROUNDS):
        diff = lab - mean
        d2 = ((diff @ np.linalg.inv(covariance)) * diff).sum(axis=1)
        keep = d2 <= FIT_QUANTILE
        if np.count_nonzero(keep) < MIN_FIT_PIXELS // 2:
            return None
        inliers = lab[keep]
        mean = inliers.mean(axis=0)
        covariance = np.cov(inliers, rowvar=False) * TRUNCATION + np.eye(3) * 0.25
    spread = float(np.percentile(np.linalg.norm(inliers - mean, axis=1), 90))
    return SkinModel(mean=mean, covariance=covariance, pixels=len(inliers), spread_delta_e76=spread)
