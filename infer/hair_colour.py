"""Hair colour for scalp micropigmentation: the strands in and around a thinning region or scar.

Strands are thin (a pixel or two) and the camera's blur mixes every strand pixel with the skin
beside it, so a plain mean of strand pixels comes out far too light. The colour is unmixed
instead, in gamma-encoded sRGB, where drawing, blur and JPEG mix colours linearly: each pixel
is c = k (s + a (h - s)) with s the skin, h the hair, a the strand's share of the pixel and k the
lighting. Divided by the local skin colour (a box mean of the non-hair pixels nearby), k drops
out: r = c / local = 1 - a (1 - h / s), channel by channel.

* How far the strand cores go (a = 1): luma of dense strands (`tone.find_hair`'s hair-level
  envelope: 7 x 7 darkest, 5 x 5 mean), as x* = the 85th percentile over strand pixels of
  1 - envelope / local skin luma. Luma is kept at full resolution by JPEG.
* The colour direction: 1 - r per channel fitted on (1, x, x_low) over the window's usable
  pixels, x = 1 - luma / local skin luma and x_low the same blurred as 4:2:0 JPEG blurs chroma
  (as `tone` de-smears skin colour); the slope per unit x is the sum of both weights.
* hair = mean skin colour of the window x (1 - slope x x*).

Spread: the 90th percentile ΔE76, from that colour, of strand cores (a >= 0.5) each unmixed
the same way on its own. On JPEG synthetic scalps with dark hair (L* <= 32) the colour is within
ΔE76 5 of the painted strand colour in 44 of 48 photos (median 2.7, worst 9.7): strong blur
keeps strand cores from reaching the strand colour, and the light on the scalp shifts it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.infer import tone
from dermaseg.infer.schema import Tone

MIN_HAIR_PIXELS = 200  # fewer strand pixels than this: the colour is unreliable
NEEDED_PIXELS = 20  # fewer strand (or skin) pixels than this: no colour at all
CORE_PERCENTILE = 85.0
CORE_SHARE = 0.5  # strand pixels at least this much strand count for the spread
SPREAD_PERCENTILE = 90.0


@dataclass(frozen=True)
class HairColour:
    tone: Tone
    spread_delta_e: float  # SPREAD_PERCENTILE ΔE76 of strand cores from `tone`
    hair_pixels: int


def _lab(rgb_float: np.ndarray) -> np.ndarray:
    """CIELAB of float sRGB 0..255 values [..., 3] (the `tone.lab_of` convention)."""
    pixels = np.clip(rgb_float, 0.0, 255.0).astype(np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab).reshape(rgb_float.shape)


def _window(region: np.ndarray, reach: int) -> tuple[slice, slice]:
    x, y, w, h = cv2.boundingRect(region.view(np.uint8))
    height, width = region.shape
    top, left = max(0, y - reach) & ~1, max(0, x - reach) & ~1  # even: JPEG's 2 x 2 blocks
    return slice(top, min(height, y + h + reach)), slice(left, min(width, x + w + reach))


def measure_hair_colour(
    rgb: np.ndarray, region: np.ndarray, excluded: np.ndarray, dark: bool
) -> tuple[HairColour | None, int]:
    """Colour of the strands within reach of `region` (bool [H, W]; inside included).

    excluded: pixels that are neither scalp nor hair (other lesions, the marker). dark: strands
    darker than the skin (`tone.hair_is_dark`). Returns the colour (None when fewer than
    NEEDED_PIXELS strand or skin pixels are found) and the strand pixel count.
    """
    region = np.ascontiguousarray(region, bool)
    if not region.any():
        return None, 0
    ring = tone.ring_px(region.shape)
    rows, cols = _window(region, int(np.ceil(2 * ring[1])))
    crop = rgb[rows, cols]
    skip = np.asarray(excluded[rows, cols], bool) & ~region[rows, cols]
    outside = (~region[rows, cols]).view(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    near = (distance <= 2 * ring[1]) & ~skip
    hair = tone.find_hair(crop, dark, ignore=skip).mask & near
    skin = near & ~hair
    hair_pixels = int(np.count_nonzero(hair))
    if hair_pixels < NEEDED_PIXELS or np.count_nonzero(skin) < NEEDED_PIXELS:
        return None, hair_pixels
    colour = crop.astype(np.float32)
    luma = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY).astype(np.float32)
    box = (int(1.5 * ring[1]) | 1,) * 2
    weight = cv2.blur(skin.astype(np.float32), box)
    valid = weight > 0.05
    weight = np.maximum(weight, 1e-3)
    local = cv2.blur(colour * skin[..., None], box) / weight[..., None]
    local_luma = np.maximum(cv2.blur(luma * skin, box) / weight, 1.0)
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * tone.HAIR_RADIUS + 1,) * 2)
    envelope = cv2.blur((cv2.erode if dark else cv2.dilate)(luma, square), (5, 5))
    cores = hair & valid
    if np.count_nonzero(cores) < NEEDED_PIXELS:
        return None, hair_pixels
    sign = 1.0 if dark else -1.0
    x_star = sign * float(
        np.percentile(sign * (1.0 - envelope / local_luma)[cores], CORE_PERCENTILE)
    )
    x = 1.0 - luma / local_luma
    fit = near & valid
    design = np.stack([np.ones(np.count_nonzero(fit)), x[fit], tone._chroma_lowpass(x)[fit]], 1)
    beta = np.linalg.lstsq(design, 1.0 - (colour / np.maximum(local, 1.0))[fit], rcond=None)[0]
    slope = beta[1] + beta[2]
    reference = colour[skin].mean(axis=0)
    lab = _lab(reference * (1.0 - slope * x_star))
    shares = (1.0 - luma / local_luma) / x_star if x_star != 0 else np.zeros_like(luma)
    strong = cores & (shares >= CORE_SHARE)
    each = reference * (1.0 - (1.0 - colour[strong] / local[strong]) / shares[strong][:, None])
    differences = np.linalg.norm(_lab(each) - lab, axis=-1)
    spread = float(np.percentile(differences, SPREAD_PERCENTILE)) if differences.size else 0.0
    return HairColour(tone.make_tone(lab, hair_pixels), round(spread, 2), hair_pixels), hair_pixels
