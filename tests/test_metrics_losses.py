"""Metrics on hand-made label maps with hand-computed answers; losses and the ignore index."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from dermaseg.train.losses import IGNORE_INDEX, LossConfig, build_loss
from dermaseg.train.metrics import SegmentationMetrics, boundary_mask, format_table

LOSS_NAMES = ["dice_ce", "dice_focal", "focal", "tversky", "ce"]


def square(size: int, rows: slice, cols: slice, value: int = 1) -> torch.Tensor:
    """A [1, size, size] label map: 0 background with one rectangle of `value`."""
    labels = torch.zeros(1, size, size, dtype=torch.long)
    labels[0, rows, cols] = value
    return labels


def evaluate(pred: torch.Tensor, target: torch.Tensor, num_classes: int = 2, **kwargs) -> dict:
    metrics = SegmentationMetrics(num_classes, [f"c{i}" for i in range(num_classes)], **kwargs)
    metrics.update(pred, target)
    return metrics.compute()


def random_maps(seed: int, n: int = 6, size: int = 24, num_classes: int = 4) -> tuple:
    """Blocky random prediction and target, with an ignored band in the target."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.randint(0, num_classes, (2, n, 1, size // 4, size // 4), generator=gen)
    pred, target = F.interpolate(coarse.flatten(0, 1).float(), scale_factor=4).long()[:, 0].chunk(2)
    target[:, :, -3:] = IGNORE_INDEX
    return pred, target


# --- boundary_mask ---------------------------------------------------------------------------


def test_boundary_mask_by_hand_ignored_pixels_make_no_edge() -> None:
    labels = torch.tensor(
        [
            [0, 0, 0, 0, 255],
            [0, 1, 1, 0, 255],
            [0, 1, 1, 0, 255],
            [0, 0, 0, 0, 255],
            [0, 0, 0, 0, 255],
        ]
    )
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[:4, :4] = True
    assert torch.equal(boundary_mask(labels), expected)
    assert torch.equal(boundary_mask(labels[None])[0], expected)


# --- SegmentationMetrics on hand-made maps ---------------------------------------------------


def test_perfect_prediction() -> None:
    target = square(8, slice(2, 5), slice(2, 5))
    result = evaluate(target.clone(), target)
    for row in result["per_class"].values():
        assert row["dice"] == row["iou"] == row["boundary_f1"] == 1.0
        assert row["area_error_pct"] == 0.0
    assert result["per_class"]["c1"]["support_px"] == 9
    assert result["per_class"]["c0"]["support_px"] == 55
    assert result["mean_dice"] == result["mean_boundary_f1"] == result["pixel_accuracy"] == 1.0


def test_shifted_square_dice_and_iou() -> None:
    # 4x4 square moved 2 px right: TP 8, FP 8, FN 8 for class 1; background TP 40, FP 8, FN 8.
    target = square(8, slice(0, 4), slice(0, 4))
    pred = square(8, slice(0, 4), slice(2, 6))
    result = evaluate(pred, target)
    c0, c1 = result["per_class"]["c0"], result["per_class"]["c1"]
    assert c1["dice"] == pytest.approx(0.5)
    assert c1["iou"] == pytest.approx(1 / 3)
    assert c0["dice"] == pytest.approx(5 / 6)
    assert c0["iou"] == pytest.approx(5 / 7)
    assert result["pixel_accuracy"] == pytest.approx(48 / 64)
    assert result["mean_dice"] == pytest.approx(0.5)  # background is left out of the means
    assert result["mean_iou"] == pytest.approx(1 / 3)
    assert c1["area_error_pct"] == 0.0


def test_one_pixel_off_boundary_f1_depends_on_tolerance() -> None:
    # The 12-px rings of the two squares share 6 px (rows 2 and 5, cols 3-5); the 20-px background
    # rings share 10. Every edge pixel has a counterpart 1 px away.
    target = square(10, slice(2, 6), slice(2, 6))
    pred = square(10, slice(2, 6), slice(3, 7))
    tolerant = evaluate(pred, target, boundary_tolerance_px=2)
    strict = evaluate(pred, target, boundary_tolerance_px=0)
    assert tolerant["per_class"]["c1"]["boundary_f1"] == 1.0
    assert tolerant["per_class"]["c0"]["boundary_f1"] == 1.0
    assert strict["per_class"]["c1"]["boundary_f1"] == pytest.approx(0.5)
    assert strict["per_class"]["c0"]["boundary_f1"] == pytest.approx(0.5)
    assert strict["mean_boundary_f1"] == pytest.approx(0.5)


def test_boundary_f1_zero_when_edge_only_in_prediction() -> None:
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    pred = square(8, slice(2, 5), slice(2, 5))
    result = evaluate(pred, target)
    assert result["per_class"]["c1"]["boundary_f1"] == 0.0
    assert result["per_class"]["c1"]["dice"] == 0.0
    assert math.isnan(result["per_class"]["c1"]["area_error_pct"])  # no photo holds class 1


def test_absent_class_is_nan_and_left_out_of_means() -> None:
    target = square(8, slice(0, 4), slice(0, 4))
    pred = square(8, slice(0, 4), slice(2, 6))
    result = evaluate(pred, target, num_classes=3)
    absent = result["per_class"]["c2"]
    for key in ("dice", "iou", "boundary_f1", "area_error_pct"):
        assert math.isnan(absent[key])
    assert absent["support_px"] == 0
    assert result["mean_dice"] == pytest.approx(0.5)
    assert result["mean_iou"] == pytest.approx(1 / 3)


def test_ignored_pixels_count_nowhere() -> None:
    target = square(8, slice(0, 4), slice(0, 4))
    pred = square(8, slice(0, 4), slice(2, 6))
    padded_target = torch.full((1, 8, 12), IGNORE_INDEX)
    padded_target[:, :, :8] = target
    padded_pred = torch.ones(1, 8, 12, dtype=torch.long)  # wrong and edgy in the ignored part
    padded_pred[:, :, :8] = pred
    padded_pred[:, 3, 9] = 0
    assert evaluate(padded_pred, padded_target) == evaluate(pred, target)


def test_area_error_pct_is_mean_over_photos_holding_the_class() -> None:
    # Photo 1: true 10 px, predicted 12 -> 20 %. Photo 2: true 20, predicted 15 -> 25 %.
    # Photo 3 holds no class 1 (its 5 predicted px are not an area error). Mean 22.5 %.
    true_areas, pred_areas = (10, 20, 0), (12, 15, 5)
    target = torch.zeros(3, 8, 8, dtype=torch.long)
    pred = torch.zeros(3, 8, 8, dtype=torch.long)
    for i, (true_px, pred_px) in enumerate(zip(true_areas, pred_areas, strict=True)):
        target[i].view(-1)[:true_px] = 1
        pred[i].view(-1)[:pred_px] = 1
    result = evaluate(pred, target)
    assert result["per_class"]["c1"]["area_error_pct"] == pytest.approx(22.5)
    assert result["per_class"]["c1"]["support_px"] == 30


def test_streaming_halves_equal_one_update() -> None:
    pred, target = random_maps(seed=1)
    whole = evaluate(pred, target, num_classes=4)
    halves = SegmentationMetrics(4, [f"c{i}" for i in range(4)])
    halves.update(pred[:2], target[:2])
    halves.update(pred[2:], target[2:])
    split = halves.compute()
    for name, row in whole["per_class"].items():
        assert split["per_class"][name] == pytest.approx(row, nan_ok=True)
    for key in ("mean_dice", "mean_iou", "mean_boundary_f1", "pixel_accuracy"):
        assert split[key] == pytest.approx(whole[key], nan_ok=True)


@pytest.mark.parametrize("seed", [0, 7])
def test_dice_and_iou_match_numpy(seed: int) -> None:
    pred, target = random_maps(seed=seed)
    result = evaluate(pred, target, num_classes=4)
    p, t = pred.numpy(), target.numpy()
    valid = t != IGNORE_INDEX
    for c in range(4):
        tp = np.sum((p == c) & (t == c) & valid)
        fp = np.sum((p == c) & (t != c) & valid)
        fn = np.sum((p != c) & (t == c) & valid)
        row = result["per_class"][f"c{c}"]
        assert row["dice"] == pytest.approx(2 * tp / (2 * tp + fp + fn))
        assert row["iou"] == pytest.approx(tp / (tp + fp + fn))
        assert row["support_px"] == tp + fn
    assert result["pixel_accuracy"] == pytest.approx(np.sum((p == t) & valid) / np.sum(valid))


def test_format_table_one_row_per_class() -> None:
    target = square(8, slice(0, 4), slice(0, 4))
    rows = format_table(evaluate(target, target))
    assert [row["class"] for row in rows] == ["c0", "c1"]
    assert set(rows[1]) == {
        "class",
        "dice",
        "iou",
        "boundary_f1",
        "area_error_pct",
        "hallucinated_area_pct",
        "support_px",
        "photos_with_class",
        "photos_without_class",
        "photos_hallucinated",
    }


def test_hallucinated_area_is_reported_apart_from_area_error() -> None:
    """A photo without class 1 where 10 % is predicted as class 1: area error (photos holding
    the class) stays 0, the over-treatment shows as hallucinated area."""
    with_class = square(10, slice(0, 5), slice(0, 5))
    without = torch.zeros(1, 10, 10, dtype=torch.long)
    stray = square(10, slice(0, 1), slice(0, 10))  # 10 px of 100
    metrics = SegmentationMetrics(2, ["bg", "c1"], keep_images=True)
    metrics.update(torch.cat([with_class, stray]), torch.cat([with_class, without]))
    c1 = metrics.compute()["per_class"]["c1"]
    assert c1["area_error_pct"] == 0.0
    assert c1["hallucinated_area_pct"] == pytest.approx(10.0)
    assert (c1["photos_with_class"], c1["photos_without_class"], c1["photos_hallucinated"]) == (
        1,
        1,
        1,
    )
    first, second = metrics.per_image()
    assert (
        first["per_class"]["c1"]["dice"] == 1.0 and first["per_class"]["c1"]["area_error_pct"] == 0
    )
    assert second["per_class"]["c1"]["dice"] == 0.0  # predicted, but absent
    assert second["per_class"]["c1"]["hallucinated_area_pct"] == pytest.approx(10.0)
    assert second["per_class"]["c1"]["area_error_pct"] is None


def test_fixed_class_mean_ignores_classes_without_support() -> None:
    """Stray predictions of a class absent from the truth change mean_dice, never the fixed
    class mean (what best-checkpoint selection and the int8 guard use)."""
    from dermaseg.train.metrics import fixed_class_mean

    target = square(12, slice(0, 6), slice(0, 6))
    clean = evaluate(target, target, num_classes=3)
    stray = target.clone()
    stray[0, 11, 11] = 2  # one stray pixel of class 2, which the truth never holds
    noisy = evaluate(stray, target, num_classes=3)
    assert clean["fixed_classes"] == noisy["fixed_classes"] == ["c1"]
    assert noisy["mean_dice"] == pytest.approx(0.5)  # class 2 Dice 0 now counts
    assert clean["fixed_mean_dice"] == noisy["fixed_mean_dice"] == fixed_class_mean(noisy) == 1.0


def test_boundary_tolerance_is_a_fraction_of_the_photo_diagonal() -> None:
    from dermaseg.train.metrics import boundary_tolerance_px

    assert boundary_tolerance_px(288, 384) == 2
    assert boundary_tolerance_px(3024, 4032) == 25
    assert boundary_tolerance_px(10, 10) == 1
    # a 2-pixel shift scored at 1x and 4x (8 px): the tolerance scales with the photo
    target = square(384, slice(100, 300), slice(100, 300))
    pred = square(384, slice(100, 300), slice(102, 302))
    big = F.interpolate(torch.stack([pred, target]).float(), scale_factor=4).long()
    small_f1 = evaluate(pred, target)["per_class"]["c1"]["boundary_f1"]
    big_f1 = evaluate(big[0], big[1])["per_class"]["c1"]["boundary_f1"]
    assert small_f1 == big_f1 == 1.0


def test_metrics_reject_bad_arguments() -> None:
    with pytest.raises(ValueError, match="class names"):
        SegmentationMetrics(3, ["a", "b"])
    metrics = SegmentationMetrics(2, ["a", "b"])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        metrics.update(torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 4, 5))


# --- losses ----------------------------------------------------------------------------------


def logits_and_target(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 8, 12, generator=gen)
    target = torch.randint(0, 4, (2, 8, 12), generator=gen)
    target[:, :, 8:] = IGNORE_INDEX
    return logits, target


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_each_loss_gives_finite_scalar_with_gradients(name: str) -> None:
    logits, target = logits_and_target()
    logits.requires_grad_(True)
    loss = build_loss(LossConfig(name=name), num_classes=4)(logits, target)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad[..., :8].abs().sum() > 0
    assert logits.grad[..., 8:].abs().sum() == 0  # ignored pixels get no gradient


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_ignored_pixels_have_no_effect(name: str) -> None:
    logits, target = logits_and_target()
    loss_fn = build_loss(LossConfig(name=name), num_classes=4)
    changed = logits.clone()
    changed[..., 8:] = torch.randn_like(changed[..., 8:]) * 50
    padded = loss_fn(logits, target)
    assert torch.equal(loss_fn(changed, target), padded)
    cropped = loss_fn(logits[..., :8].contiguous(), target[..., :8].contiguous())
    assert padded.item() == pytest.approx(cropped.item(), rel=1e-5)


def test_dice_ce_is_weighted_sum_of_its_terms() -> None:
    logits, target = logits_and_target(seed=3)
    ce_only = build_loss(LossConfig(name="dice_ce", dice_weight=0.0, ce_weight=2.0), 4)
    ce = build_loss(LossConfig(name="ce"), 4)
    assert ce_only(logits, target).item() == pytest.approx(2 * ce(logits, target).item())


def test_class_weights_apply_to_cross_entropy() -> None:
    logits, target = logits_and_target(seed=4)
    weights = [0.1, 1.0, 2.0, 3.0]
    loss = build_loss(LossConfig(name="ce", class_weights=weights), 4)(logits, target)
    expected = F.cross_entropy(
        logits, target, weight=torch.tensor(weights), ignore_index=IGNORE_INDEX
    )
    assert loss.item() == pytest.approx(expected.item())


def test_class_weights_length_must_match() -> None:
    with pytest.raises(ValueError, match=r"3 values.*4 classes"):
        build_loss(LossConfig(class_weights=[1.0, 2.0, 3.0]), num_classes=4)
    with pytest.raises(ValueError, match="tversky"):
        build_loss(LossConfig(name="tversky", class_weights=[1.0, 2.0]), num_classes=2)


def test_loss_config_rejects_unknown_fields_and_names() -> None:
    with pytest.raises(ValidationError):
        LossConfig(dice_wieght=1.0)
    with pytest.raises(ValidationError):
        LossConfig(name="lovasz")
