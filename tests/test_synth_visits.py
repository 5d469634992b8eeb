"""The synthetic generator's visit pairs, SMP close-ups and SALT views: determinism and truth."""

from __future__ import annotations

import numpy as np

from dermaseg.datasets.synth_scalp import smp_scalp
from dermaseg.datasets.synth_scene import VITILIGO
from dermaseg.datasets.synth_visits import CHANGES, CameraMove, visit_pair


def test_visit_pair_is_deterministic_and_its_truth_adds_up() -> None:
    move = CameraMove(rotation_deg=12.0, scale=1.1, tilt=(0.05, 0.0))
    first, again = visit_pair(2, (256, 224), move), visit_pair(2, (256, 224), move)
    assert np.array_equal(first.rgb_b, again.rgb_b) and np.array_equal(first.mask_a, again.mask_a)
    truth = first.truth
    seen = truth["seen"]
    a, b = (first.mask_a == VITILIGO) & seen, (truth["scene_mask_b"] == VITILIGO) & seen
    areas = truth["areas_px"]
    assert areas["unchanged"] == np.count_nonzero(a & b)
    assert areas["new"] + areas["grown"] == np.count_nonzero(b & ~a)
    assert areas["shrunk"] + areas["cleared"] == np.count_nonzero(a & ~b)
    assert sorted(p["change"] for p in truth["patches"].values()) == sorted(CHANGES)
    assert all(v > 0 for v in areas.values())
    homography = np.array(truth["homography"])
    centre = homography @ np.array([(256 - 1) / 2, (224 - 1) / 2, 1.0])
    assert np.allclose(centre[:2] / centre[2], [(256 - 1) / 2, (224 - 1) / 2], atol=0.5)
    # B's photo is the scene moved: its mask has the scene's vitiligo area times the zoom²
    zoomed = np.count_nonzero(first.mask_b == VITILIGO) / np.count_nonzero(b)
    assert 1.1**2 * 0.9 < zoomed < 1.1**2 * 1.1


def test_smp_scalp_strand_counts() -> None:
    scalp = smp_scalp(1, density_per_cm2=80.0, strand_width_mm=0.1)
    truth = scalp.truth
    assert abs(truth["density_per_cm2"] / 80.0 - 1) < 0.1  # follicles on a jittered grid
    assert truth["strand_width_mm"] == 0.1 and (scalp.mask > 0).mean() > 0.05
    again = smp_scalp(1, density_per_cm2=80.0, strand_width_mm=0.1)
    assert np.array_equal(scalp.rgb, again.rgb)
