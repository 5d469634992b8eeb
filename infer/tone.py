"""Skin and patch colour for pigment matching: CIELAB means, ITA° and hair that must not count.

Colour convention (the same as the synthetic ground truth, `datasets/synth_truth.py`): an RGB uint8
pixel is converted as rgb / 255 in float32 with `cv2.COLOR_RGB2Lab` (D65, L* 0..100), and a colour
is the mean of per-pixel CIELAB. Functions take the RGB photo and convert only the crops they need,
so a 12-MP photo is never copied to float as a whole.

Hair. Strands are found from lightness alone (8-bit luma standing in for L*), at full
resolution: around every pixel the local skin level is an envelope of lightness (a grey dilation
for strands darker than skin, an erosion for lighter ones, over a 7 x 7 square, then a 5 x 5 box
mean) and the hair level the opposite envelope. Where the two levels are at least
`HAIR_MIN_CONTRAST` apart, a pixel is hair when it lies at least `HAIR_MIN_STEP` L* units and 25 %
of the skin-to-hair step away from the skin level (the synthetic truth calls a pixel bare below
10 % strand coverage before the camera blur, which spreads strands); its coverage is that distance
as a fraction of the step. Whether strands are darker or lighter than skin: `hair_is_dark`.

JPEG. JPEG keeps colour (chroma) at half resolution (4:2:0): every skin pixel between strands,
and every border pixel of a small patch, carries some of its neighbours' colour. L* (full
resolution) is a plain mean: over the patch, and over the ring pixels that are not hair. a*, b*
are de-smeared (`_Unmix`): with x the share of the other colour in each pixel (hair coverage for
a surround, the patch indicator for a patch) and x_low the same blurred as JPEG blurs chroma,
a*, b* nearby are fitted on (1, x, x_low); the weight of x_low is the colour step JPEG smeared
(about 0 for a sharp, non-JPEG image), and the mean is corrected by it times mean(x_low - x).

Limits, measured on JPEG-compressed synthetic photos against their pre-JPEG truth (worst ΔE76 of
patch, surround and skin colours in the tests: 1.4 on skin, 1.9 on scalps with dark hair):
light hair (grey, blond, red) fails the 2 ΔE76 mark in about 8 of 40 scalp photos, hair within
~10 L* of the skin leaving too little luma to unmix, and blond or red hair on darker skin being
taken for dark hair unless a thinning region tells `hair_is_dark` otherwise. A one-pixel patch
keeps the chroma JPEG gave it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dermaseg.infer import schema
from dermaseg.infer.skin_model import SkinModel

# ITA° categories (Chardon et al. 1991), lower bounds exclusive: the first whose bound ita exceeds
ITA_CATEGORIES: tuple[tuple[str, float], ...] = (
    ("very light", 55.0),
    ("light", 41.0),
    ("intermediate", 28.0),
    ("tan", 10.0),
    ("brown", -30.0),
    ("dark", -np.inf),
)
RING_PX = (5.0, 20.0)  # surround ring for photos up to RING_REFERENCE_PX on the short side
RING_REFERENCE_PX = 512
MIN_RING_PIXELS = 10
HAIR_RADIUS = 3  # px: local levels are the extremes within this distance (7 x 7 square) ...
HAIR_SMOOTH = 2  # px: ... then box-averaged over this radius (5 x 5)
HAIR_MIN_STEP = 3.0  # L* units from the local skin level before a pixel counts as hair
HAIR_FRACTION = 0.25  # ... and this part of the local skin-to-hair step (camera blur included)
HAIR_MIN_CONTRAST = 5.0  # L* units between local skin and hair levels where strands are sought
HAIR_NOISE = 1.5  # L* units of noise allowed for at the skin level when measuring coverage
MIN_HAIR_SHARE = 0.05  # mean coverage over a ring above which its chroma is unmixed
HINTLESS_TILE_PX = 256  # hair_is_dark without a hint looks at up to 4 x 4 tiles this large
HINTLESS_TILES = 4
EDGE_BAND_PX = 3.0  # skin this close to a patch joins the regression that corrects its chroma


# ---------------------------------------------------------------------------------------------
# colour arithmetic


def lab_of(rgb: np.ndarray) -> np.ndarray:
    """CIELAB float32 [..., 3] of RGB uint8 pixels (rgb / 255 -> cv2.COLOR_RGB2Lab, L* 0..100)."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"expected RGB uint8 pixels [..., 3], got {rgb.dtype} {rgb.shape}")
    if rgb.size == 0:
        return np.zeros(rgb.shape, np.float32)
    flat = rgb.reshape(-1, 1, 3) if rgb.ndim != 3 else rgb
    lab = cv2.cvtColor(flat.astype(np.float32) * np.float32(1.0 / 255.0), cv2.COLOR_RGB2Lab)
    return lab.reshape(rgb.shape)


def ita_deg(lab) -> float:
    """Individual typology angle: ITA = atan2(L* - 50, b*) in degrees.

    For b* > 0 this is the usual atan((L* - 50) / b*) * 180 / pi; atan2 keeps it defined (+-90°)
    at b* = 0 and continuous for b* < 0.
    """
    lightness, _, b = (float(v) for v in np.asarray(lab, np.float64).reshape(3))
    return float(np.degrees(np.arctan2(lightness - 50.0, b)))


def ita_category(ita: float) -> str:
    """ITA° category: very light > 55 >= light > 41 >= intermediate > 28 >= tan > 10 >= brown
    > -30 >= dark."""
    for name, lower in ITA_CATEGORIES:
        if ita > lower:
            return name
    return ITA_CATEGORIES[-1][0]


def delta_e76(a, b) -> float:
    """CIE76 colour difference: Euclidean distance in CIELAB."""
    return float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64)))


def lab_to_hex(lab) -> str:
    """'#rrggbb' of a CIELAB colour (cv2 Lab -> sRGB, clipped to the gamut, rounded)."""
    pixel = np.asarray(lab, np.float32).reshape(1, 1, 3)
    rgb = np.clip(cv2.cvtColor(pixel, cv2.COLOR_Lab2RGB).reshape(3), 0.0, 1.0)
    red, green, blue = (int(v) for v in np.round(rgb * 255.0))
    return f"#{red:02x}{green:02x}{blue:02x}"


def make_tone(lab, pixels: int) -> schema.Tone:
    """A schema Tone of one CIELAB colour measured over `pixels` pixels."""
    values = tuple(round(float(v), 3) for v in np.asarray(lab, np.float64).reshape(3))
    ita = ita_deg(values)
    return schema.Tone(
        lab=values,
        hex=lab_to_hex(values),
        ita_deg=round(ita, 3),
        ita_category=ita_category(ita),
        pixels=int(pixels),
    )


def tone_of(lab: np.ndarray, where: np.ndarray, min_pixels: int = 1) -> schema.Tone | None:
    """Mean colour of the `where` pixels of a CIELAB float32 image [h, w, 3] (e.g. `lab_of` of a
    crop); None when fewer than `min_pixels` are selected."""
    selected = np.ascontiguousarray(where, np.uint8)
    count = cv2.countNonZero(selected)
    if count < max(1, min_pixels):
        return None
    return make_tone(cv2.mean(np.ascontiguousarray(lab, np.float32), mask=selected)[:3], count)


def ring_px(shape: tuple[int, ...]) -> tuple[float, float]:
    """Inner and outer surround distance in px: (5, 20) up to 512 px on the short side, scaled
    proportionally above."""
    scale = max(1.0, min(shape[0], shape[1]) / RING_REFERENCE_PX)
    return RING_PX[0] * scale, RING_PX[1] * scale


# ---------------------------------------------------------------------------------------------
# hair


@dataclass(frozen=True)
class Hair:
    """Strands found in a photo (or a crop): where they are, how much of each pixel they cover."""

    mask: np.ndarray  # bool [H, W]: pixels to leave out of skin colour
    coverage: np.ndarray  # uint8 [H, W]: share of the pixel's colour that is strand, x 255
    dark: bool  # strands darker than skin


def find_hair(rgb: np.ndarray, dark: bool = True, ignore: np.ndarray | None = None) -> Hair:
    """Thin strands darker (`dark`) or lighter than the skin around them, at full resolution.

    Works on 8-bit grey (luma), whose steps are close to L* units x 2.55 on skin, with 8-bit
    morphology only (about 0.1 s on a 12-MP photo). `ignore`: pixels that are neither skin nor
    hair (vitiligo, scars, the marker); they do not set the local levels, so skin next to a pale
    patch is not taken for hair. Thinning-hair regions are scalp: leave them in.
    """
    lightness = _gray(rgb)
    if min(lightness.shape) < 2 * HAIR_RADIUS + 1:  # no room for skin on both sides of a strand
        none = np.zeros(lightness.shape, np.uint8)
        return Hair(mask=none > 0, coverage=none, dark=bool(dark))
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * HAIR_RADIUS + 1,) * 2)
    to_skin, to_hair = (cv2.dilate, cv2.erode) if dark else (cv2.erode, cv2.dilate)
    skin_src, hair_src = lightness, lightness
    if ignore is not None and np.any(ignore):
        ignore = np.asarray(ignore, bool)
        skin_src = lightness.copy()
        skin_src[ignore] = 0 if dark else 255
        hair_src = lightness.copy()
        hair_src[ignore] = 255 if dark else 0
    box = (2 * HAIR_SMOOTH + 1,) * 2
    skin = cv2.blur(to_skin(skin_src, square), box)
    hair = cv2.blur(to_hair(hair_src, square), box)
    if dark:
        excess, step = cv2.subtract(skin, lightness), cv2.subtract(skin, hair)
    else:
        excess, step = cv2.subtract(lightness, skin), cv2.subtract(hair, skin)
    units = 255.0 / 100.0  # grey levels per L* unit
    strands = cv2.compare(step, round(units * HAIR_MIN_CONTRAST), cv2.CMP_GE)
    fraction = cv2.compare(cv2.multiply(excess, 1.0 / HAIR_FRACTION), step, cv2.CMP_GE)
    far = cv2.compare(excess, round(units * HAIR_MIN_STEP), cv2.CMP_GE)
    mask = cv2.bitwise_and(cv2.bitwise_and(strands, fraction), far) > 0
    noise = round(units * HAIR_NOISE)
    scale = cv2.max(cv2.subtract(step, noise), round(units * HAIR_MIN_STEP))
    coverage = cv2.bitwise_and(cv2.divide(cv2.subtract(excess, noise), scale, scale=255), strands)
    return Hair(mask=mask, coverage=coverage, dark=bool(dark))


def hair_mask(rgb: np.ndarray, dark: bool = True, ignore: np.ndarray | None = None) -> np.ndarray:
    """Bool [H, W]: hair strands (see `find_hair`)."""
    return find_hair(rgb, dark, ignore).mask


def hair_is_dark(rgb: np.ndarray, bare_hint: np.ndarray | None = None) -> bool:
    """Whether strands are darker than the skin.

    With `bare_hint`, a region known to be mostly bare skin (thinning hair): under the right
    assumption it holds clearly less hair than its surroundings. Without one, strands count as
    dark unless the lighter strand cores look grey (chroma at most 10.5, the darker cores' at least
    25 % more): grey or white hair. Blond or red hair on darker skin is then missed.
    """
    if bare_hint is not None and np.count_nonzero(bare_hint) >= 50:
        x, y, w, h = cv2.boundingRect(np.ascontiguousarray(bare_hint, np.uint8))
        margin = max(16, (w + h) // 4)
        rows = slice(max(0, y - margin), y + h + margin)
        cols = slice(max(0, x - margin), x + w + margin)
        inside = np.asarray(bare_hint, bool)[rows, cols]
        if not inside.all():
            contrast = []
            for dark in (True, False):
                mask = find_hair(rgb[rows, cols], dark).mask
                contrast.append(mask[~inside].mean() - mask[inside].mean())
            return bool(contrast[0] >= contrast[1])
    chroma = []
    for dark in (True, False):
        total, count = np.zeros(2), 0
        for rows, cols in _tiles(rgb.shape, HINTLESS_TILE_PX, HINTLESS_TILES):
            tile = rgb[rows, cols]
            cores = find_hair(tile, dark).coverage >= round(0.6 * 255)
            total += lab_of(tile[cores])[:, 1:].sum(axis=0, dtype=np.float64)
            count += int(np.count_nonzero(cores))
        if count < 100:
            return True
        chroma.append(float(np.hypot(*(total / count))))
    return not (chroma[1] <= 10.5 and chroma[0] >= 1.25 * chroma[1])


# ---------------------------------------------------------------------------------------------
# patch and skin colour


def patch_tone(
    rgb: np.ndarray,
    region_pixels: np.ndarray,
    bbox: tuple[int, int, int, int],
    lesion: np.ndarray,
    excluded: np.ndarray,
    ring: tuple[float, float],
    hair: Hair | None = None,
    skin: SkinModel | None = None,
) -> schema.PatchTone:
    """Colour of one patch and of the bare skin in a ring around it.

    rgb: the photo, uint8 [H, W, 3]. region_pixels: bool [h, w], the patch inside `bbox` (x, y,
    w, h). lesion: bool [H, W], every non-background pixel (other patches stay out of the ring).
    excluded: bool [H, W], pixels never counted as skin (hair, the marker). ring: inner and outer
    distance in px (`ring_px`). The ring is the pixels whose Euclidean distance to the patch lies
    in [ring[0], ring[1]] and that are neither lesion nor excluded; fewer than 10 give no
    surround. The patch colour is the mean over all its pixels, a*, b* corrected for JPEG's
    chroma blur across its border. With `hair` (from `find_hair`), the surround's a*, b* are
    unmixed from strand colour (module notes): pixels in `hair.mask` then join that regression,
    other excluded pixels never do. With `skin` (the photo's skin model), ring pixels it does
    not call skin (lips, clothes, background) are left out too, and `skin_share` says how much of
    the ring was skin. Only crops around the bbox are converted to CIELAB.
    """
    x, y, w, h = (int(v) for v in bbox)
    region = np.asarray(region_pixels, bool)
    if region.shape != (h, w):
        raise ValueError(f"region_pixels has shape {region.shape}, bbox says {(h, w)}")
    height, width = lesion.shape[:2]
    reach = int(np.ceil(ring[1])) + 3
    # crop origin on even coordinates, so 2x2 chroma blocks of a JPEG line up with the crop's
    top, left = max(0, y - reach) & ~1, max(0, x - reach) & ~1
    rows, cols = slice(top, min(height, y + h + reach)), slice(left, min(width, x + w + reach))
    crop = lab_of(rgb[rows, cols])
    inside = np.zeros(crop.shape[:2], bool)
    inside[y - top : y - top + h, x - left : x - left + w] = region
    other = np.asarray(lesion[rows, cols], bool) & ~inside  # other patches
    skip = np.asarray(excluded[rows, cols], bool)
    distance = cv2.distanceTransform((~inside).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    patch = _patch_colour(crop, inside, (distance <= EDGE_BAND_PX) & ~other & ~skip)
    candidates = (distance >= ring[0]) & (distance <= ring[1]) & ~other
    share = None
    if skin is not None:
        is_skin = skin.is_skin(crop)
        share = _ring_skin_share(candidates, is_skin, skip, hair, (rows, cols))
        skip = skip | ~is_skin
    surround = _skin_colour(
        crop,
        candidates,
        skip,
        None if hair is None else (hair.mask[rows, cols], hair.coverage[rows, cols]),
        MIN_RING_PIXELS,
    )
    difference = spread = None
    if patch is not None and surround is not None:
        difference = round(delta_e76(patch.lab, surround.lab), 3)
    if surround is not None:
        kept = crop[candidates & ~skip]
        spread = round(float(np.percentile(np.linalg.norm(kept - surround.lab, axis=1), 90)), 3)
    return schema.PatchTone(
        patch=patch,
        surround=surround,
        delta_e76=difference,
        ring_px=(float(ring[0]), float(ring[1])),
        skin_share=share,
        spread_delta_e76=spread,
    )


def _ring_skin_share(
    ring: np.ndarray,
    is_skin: np.ndarray,
    excluded: np.ndarray,
    hair: Hair | None,
    crop: tuple[slice, slice],
) -> float | None:
    """Share of a ring that is skin by the photo's skin model, the marker and hair strands
    aside. A pixel the strand finder marked but the skin model calls skin counts as skin: on
    textured skin (creases, callus, a wound's rim) the finder marks the darker half of the
    pixels, and leaving those out would leave only the brightest, the ones least like the skin's
    mean (FUSeg val: whole rings of a foot's skin read as 'not skin'). Strands the model does not
    call skin stay aside, so dense hair on a scalp does not count against the ring."""
    strands = np.zeros_like(excluded) if hair is None else hair.mask[crop]
    marker = excluded & ~strands
    pool = ring & ~marker & (is_skin | ~strands)
    return _share(pool & is_skin, pool)


def _share(part: np.ndarray, whole: np.ndarray) -> float | None:
    total = int(np.count_nonzero(whole))
    return None if total == 0 else round(int(np.count_nonzero(part)) / total, 4)


def skin_tone(
    rgb: np.ndarray,
    lesion: np.ndarray,
    excluded: np.ndarray,
    stride: int = 1,
    hair: Hair | None = None,
    band_rows: int = 512,
    skin: SkinModel | None = None,
) -> schema.Tone | None:
    """Mean colour of the photo's bare skin: pixels neither `lesion` nor `excluded`.

    Pass as `lesion` what is not normal skin (vitiligo, scars; thinning-hair regions are scalp
    skin and may stay in). `stride` samples every stride-th row and column; the photo is
    converted in bands of `band_rows` rows. `hair` unmixes a*, b* as in `patch_tone`.
    """
    stride = max(1, int(stride))
    height = lesion.shape[0]
    count, lab_sum, shift_sum, share_sum = 0, np.zeros(3), 0.0, 0.0
    unmix = _Unmix()
    band_rows = max(2 * stride, band_rows - band_rows % (2 * stride))
    for start in range(0, height, band_rows):
        rows = slice(start, min(height, start + band_rows))
        lab = lab_of(rgb[rows][::stride, ::stride])
        lesion_here = np.asarray(lesion[rows][::stride, ::stride], bool)
        skip = np.asarray(excluded[rows][::stride, ::stride], bool)
        if skin is not None:  # what the photo's skin model does not call skin
            skip = skip | ~skin.is_skin(lab)
        selected = (~lesion_here & ~skip).view(np.uint8)
        n = cv2.countNonZero(selected)
        if n:
            count += n
            lab_sum += np.array(cv2.mean(lab, mask=selected)[:3]) * n
        if hair is None:
            continue
        # JPEG blurs chroma at full resolution: blur the band with a little margin, then sample
        above, below = max(0, start - 4), min(height, rows.stop + 4)
        low8 = _chroma_lowpass(hair.coverage[above:below])[start - above :][: rows.stop - start]
        x_low = low8[::stride, ::stride].astype(np.float32) * np.float32(1.0 / 255.0)
        x = hair.coverage[rows][::stride, ::stride].astype(np.float32) * np.float32(1.0 / 255.0)
        fit = ~lesion_here & ~(skip & ~np.asarray(hair.mask[rows][::stride, ::stride], bool))
        unmix.add(lab, fit, x, x_low)
        share_sum += cv2.mean(x, mask=fit.view(np.uint8))[0] * cv2.countNonZero(fit.view(np.uint8))
        if n:
            shift_sum += cv2.mean(x_low - x, mask=selected)[0] * n
    if count == 0:
        return None
    mean = lab_sum / count
    if hair is not None and unmix.n and share_sum / unmix.n >= MIN_HAIR_SHARE:
        smear = unmix.smear()
        if smear is not None:
            mean[1:] -= smear * (shift_sum / count)
    return make_tone(mean, count)


# ---------------------------------------------------------------------------------------------
# internals


def _gray(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _chroma_lowpass(values: np.ndarray) -> np.ndarray:
    """What 4:2:0 JPEG does to a channel: 2x2 block means, then bilinear upsampling."""
    height, width = values.shape[:2]
    half = cv2.resize(values, ((width + 1) // 2, (height + 1) // 2), interpolation=cv2.INTER_AREA)
    return cv2.resize(half, (width, height), interpolation=cv2.INTER_LINEAR)


class _Unmix:
    """Least squares of a*, b* on (1, x, x_low) over some pixels, where x is a per-pixel share of
    another colour (hair coverage, or the patch indicator) and x_low is x blurred as 4:2:0 JPEG
    blurs chroma. If the chroma was smeared by JPEG, a*, b* follow x_low and its weight c_low is
    the colour step that was smeared; in a sharp image they follow x and c_low is about 0. A mean
    over pixels P is then de-smeared by subtracting c_low x mean_P(x_low - x)."""

    def __init__(self) -> None:
        self.n = 0
        self.zz = np.zeros((3, 3))  # sums of z z^T, z = (1, x, x_low)
        self.zy = np.zeros((3, 2))  # sums of z (a*, b*)

    def add(self, lab: np.ndarray, where: np.ndarray, x: np.ndarray, x_low: np.ndarray) -> None:
        mask = where.view(np.uint8)
        n = cv2.countNonZero(mask)
        if not n:
            return
        x, x_low = x.astype(np.float32, copy=False), x_low.astype(np.float32, copy=False)

        def mean(values: np.ndarray) -> np.ndarray:
            return np.array(cv2.mean(values, mask=mask)[:3]) * n

        m_x, m_low = mean(x)[0], mean(x_low)[0]
        m_xx, m_ll, m_xl = mean(x * x)[0], mean(x_low * x_low)[0], mean(x * x_low)[0]
        self.n += n
        self.zz += np.array(
            [[n, m_x, m_low], [m_x, m_xx, m_xl], [m_low, m_xl, m_ll]], dtype=np.float64
        )
        self.zy[0] += mean(lab)[1:]
        self.zy[1] += mean(lab * x[..., None])[1:]
        self.zy[2] += mean(lab * x_low[..., None])[1:]

    def smear(self) -> np.ndarray | None:
        """c_low for a*, b*, or None when the pixels cannot tell x from x_low."""
        if self.n < 2 * MIN_RING_PIXELS:
            return None
        moments = self.zz / self.n
        mean_x, mean_low = moments[0, 1], moments[0, 2]
        # variance of x_low left after x (and the constant) explain what they can
        cov = moments[1:, 1:] - np.outer([mean_x, mean_low], [mean_x, mean_low])
        if cov[0, 0] <= 1e-6 or cov[1, 1] - cov[0, 1] ** 2 / cov[0, 0] < 1e-4:
            return None
        return np.linalg.solve(self.zz, self.zy)[2]


def _tiles(shape: tuple[int, ...], size: int, per_side: int) -> list[tuple[slice, slice]]:
    """Up to per_side x per_side tiles of `size` px spread evenly over an image."""
    out = []
    for axis_len in shape[:2]:
        if axis_len <= size * per_side:
            starts = list(range(0, axis_len, size))
        else:
            starts = np.linspace(0, axis_len - size, per_side).round().astype(int).tolist()
        out.append([slice(a, min(axis_len, a + size)) for a in starts])
    return [(rows, cols) for rows in out[0] for cols in out[1]]


def _patch_colour(lab: np.ndarray, inside: np.ndarray, near: np.ndarray) -> schema.Tone | None:
    """Mean colour of a patch, a*, b* de-smeared where JPEG's half-resolution chroma mixed the
    patch's border with the skin next to it (`_Unmix` with x the patch indicator, fitted on a
    band of EDGE_BAND_PX on both sides of the border; `near`: usable pixels that close)."""
    inside8 = inside.view(np.uint8)
    count = cv2.countNonZero(inside8)
    if count == 0:
        return None
    mean = np.array(cv2.mean(lab, mask=inside8)[:3])
    x = inside8.astype(np.float32)
    x_low = _chroma_lowpass(x)
    depth = 2 * int(np.ceil(EDGE_BAND_PX)) + 1
    deep = cv2.erode(inside8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (depth, depth)))
    unmix = _Unmix()
    unmix.add(lab, (near & ~inside) | (inside & (deep == 0)), x, x_low)
    smear = unmix.smear()
    if smear is not None:
        mean[1:] -= smear * (cv2.mean(x_low, mask=inside8)[0] - 1.0)
    return make_tone(mean, count)


def _skin_colour(
    lab: np.ndarray,
    candidates: np.ndarray,
    excluded: np.ndarray,
    hair: tuple[np.ndarray, np.ndarray] | None,
    min_pixels: int,
) -> schema.Tone | None:
    """Mean colour of candidates that are not excluded; with hair (mask, coverage x 255), a*, b*
    de-smeared from strand colour (`_Unmix` with x the coverage, fitted on the candidates that
    are skin or hair)."""
    selected = candidates & ~excluded
    count = int(np.count_nonzero(selected))
    if count < min_pixels:
        return None
    mean = np.array(cv2.mean(lab, mask=selected.view(np.uint8))[:3])
    if hair is not None:
        mask, coverage = hair
        x = coverage.astype(np.float32) * np.float32(1.0 / 255.0)
        x_low = _chroma_lowpass(x)
        fit = candidates & ~(excluded & ~mask)
        if cv2.mean(x, mask=fit.view(np.uint8))[0] >= MIN_HAIR_SHARE:
            unmix = _Unmix()
            unmix.add(lab, fit, x, x_low)
            smear = unmix.smear()
            if smear is not None:
                shift = cv2.mean(x_low - x, mask=selected.view(np.uint8))[0]
                mean[1:] -= smear * shift
    return make_tone(mean, count)
