"""What `dermaseg export` fits on the validation split: the confidence temperature and the
post-processing rule (nnU-Net style), both stored in the exported model.

Both are fitted at the working size on the network's own passes (with the export's
test-time augmentation), exactly as the graph computes its outputs:
- temperature scaling (Guo et al. 2017): one T > 0 minimising the NLL of softmax(logits / T)
  over labelled pixels; the argmax is unchanged, `confidence` becomes calibrated. The expected
  calibration error (ECE, `ECE_BINS` equal-width bins of the top probability) is recorded
  before and after.
- post-processing (`dermaseg.infer.postprocess`): per class, the smallest-component fraction
  from `postprocess.FRACTIONS` that raises that class's mean per-photo Dice over the split (0
  when none does), then keeping only its largest component if that raises it further (nnU-Net's
  rule: photos with one lesion each), then hole filling if it raises the mean over the fixed
  class set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from dermaseg.datasets.dataset import Dataset
from dermaseg.errors import InputError
from dermaseg.infer.postprocess import FRACTIONS, PostProcess, apply_postprocess
from dermaseg.train.data import resize_photo
from dermaseg.train.planning_graph import calibrated_probabilities, pass_logits

ECE_BINS = 15
MAX_FIT_PIXELS = 400_000  # labelled pixels sampled for the temperature fit
TEMPERATURES = np.exp(np.linspace(math.log(0.2), math.log(10.0), 121))


@dataclass
class ValPass:
    """One validation photo at the working size: logits per TTA pass and the true mask."""

    logits: list[torch.Tensor]  # [1, C, h, w] each
    truth: np.ndarray  # [h, w] class ids


@torch.no_grad()
def val_passes(
    net: nn.Module, data: Dataset, size: int, tta: str | None, split: str = "val"
) -> list[ValPass]:
    """The network's passes over the readable photos of `split`, resized as in training."""
    passes = []
    for record in data.split_records(split):
        try:
            sample = data.load(record)
        except InputError:
            continue
        image, mask = resize_photo(sample.image, sample.mask, size)
        pixels = torch.from_numpy(image).permute(2, 0, 1)[None].float()
        passes.append(ValPass(pass_logits(net, pixels, tta), mask))
    return passes


def _sampled(passes: list[ValPass], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits [P, K, C] of up to MAX_FIT_PIXELS labelled pixels (K passes) and their classes."""
    logits = torch.cat(
        [torch.stack([x[0].flatten(1).T for x in p.logits], 1) for p in passes]
    )  # [pixels, K, C]
    truth = torch.cat([torch.from_numpy(p.truth.astype(np.int64)).flatten() for p in passes])
    keep = truth < logits.shape[2]  # labelled pixels (not an ignore value)
    logits, truth = logits[keep], truth[keep]
    if len(truth) > MAX_FIT_PIXELS:
        pick = torch.randperm(len(truth), generator=torch.Generator().manual_seed(seed))
        logits, truth = logits[pick[:MAX_FIT_PIXELS]], truth[pick[:MAX_FIT_PIXELS]]
    return logits, truth


def _probabilities(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """[P, C] TTA-averaged calibrated probabilities of [P, K, C] logits."""
    return calibrated_probabilities(
        [logits[:, k, :, None] for k in range(logits.shape[1])], temperature
    )[..., 0]


def expected_calibration_error(probabilities: torch.Tensor, truth: torch.Tensor) -> float:
    """ECE of the top-class probability over ECE_BINS equal-width bins."""
    top, predicted = probabilities.max(dim=1)
    correct = (predicted == truth).double()
    bins = torch.clamp((top * ECE_BINS).long(), max=ECE_BINS - 1)
    error = 0.0
    for b in range(ECE_BINS):
        inside = bins == b
        if inside.any():
            gap = correct[inside].mean() - top[inside].double().mean()
            error += float(inside.double().mean() * gap.abs())
    return error


def fit_temperature(passes: list[ValPass]) -> dict:
    """The temperature minimising NLL on the split (grid over 0.2..10), and ECE before/after."""
    logits, truth = _sampled(passes)
    losses = []
    for temperature in TEMPERATURES:
        probabilities = _probabilities(logits, float(temperature))
        picked = probabilities.gather(1, truth[:, None])[:, 0].clamp_min(1e-12)
        losses.append(float(-picked.log().mean()))
    best = float(TEMPERATURES[int(np.argmin(losses))])
    return {
        "method": "temperature",
        "temperature": round(best, 4),
        "ece_before": expected_calibration_error(_probabilities(logits, 1.0), truth),
        "ece_after": expected_calibration_error(_probabilities(logits, best), truth),
        "nll_before": losses[int(np.argmin(np.abs(TEMPERATURES - 1.0)))],
        "nll_after": min(losses),
        "fitted_on": "val",
        "photos": len(passes),
        "pixels": len(truth),
        "bins": ECE_BINS,
    }


def _dice(masks: list[np.ndarray], truths: list[np.ndarray], class_id: int) -> float:
    """Mean per-photo Dice of one class over the photos that show it or where it is predicted
    (nnU-Net's criterion: a rule that erases a photo's only small wound costs that photo its
    whole Dice, which counts summed over the split would hardly notice); 1 when there are none."""
    scores = []
    for mask, truth in zip(masks, truths, strict=True):
        p, t = mask == class_id, truth == class_id
        both = int(np.count_nonzero(p)) + int(np.count_nonzero(t))
        if both:
            scores.append(2 * int(np.count_nonzero(p & t)) / both)
    return float(np.mean(scores)) if scores else 1.0


def learn_postprocess(passes: list[ValPass], class_names: list[str], temperature: float) -> dict:
    """The post-processing rule that helps on the split (see the module docstring)."""
    masks = [
        calibrated_probabilities(p.logits, temperature)[0].argmax(0).numpy().astype(np.uint8)
        for p in passes
    ]
    truths = [p.truth for p in passes]
    fixed = [c for c in range(1, len(class_names)) if any((t == c).any() for t in truths)]
    fractions, before, after = {}, {}, {}
    for c in range(1, len(class_names)):
        name = class_names[c]
        scores = []
        for fraction in FRACTIONS:
            cleaned = [apply_postprocess(m, PostProcess({c: fraction})) for m in masks]
            scores.append(_dice(cleaned, truths, c))
        best = int(np.argmax(scores))  # the first (smallest fraction) of equal scores
        fractions[name] = FRACTIONS[best]
        before[name], after[name] = scores[0], scores[best]
    ids = {class_names.index(name): value for name, value in fractions.items()}
    largest: list[str] = []
    for c in range(1, len(class_names)):
        name = class_names[c]
        kept = [apply_postprocess(m, PostProcess(ids, largest_only=frozenset({c}))) for m in masks]
        if any((t == c).any() for t in truths) and _dice(kept, truths, c) > after[name]:
            largest.append(name)
            after[name] = _dice(kept, truths, c)
    rule = {"min_component_fraction": fractions, "largest_only": largest, "fill_holes": False}
    largest_ids = frozenset(class_names.index(name) for name in largest)
    cleaned = [apply_postprocess(m, PostProcess(ids, largest_only=largest_ids)) for m in masks]
    filled = [apply_postprocess(m, PostProcess({}, True)) for m in cleaned]

    def mean(maps: list[np.ndarray]) -> float:
        return float(np.mean([_dice(maps, truths, c) for c in fixed])) if fixed else 1.0

    rule["fill_holes"] = mean(filled) > mean(cleaned)
    return {
        **rule,
        "fitted_on": "val",
        "photos": len(passes),
        "fixed_classes": [class_names[c] for c in fixed],
        "dice_before": {k: round(v, 4) for k, v in before.items()},
        "dice_after": {k: round(v, 4) for k, v in after.items()},
        "mean_dice_before": mean(masks),
        "mean_dice_after": mean(filled if rule["fill_holes"] else cleaned),
    }
