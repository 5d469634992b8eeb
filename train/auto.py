"""The `auto` recipe: working size, crop, batch and schedule chosen from the dataset's fingerprint.

As nnU-Net plans from its fingerprint, `plan(fingerprint, device)` is a pure function returning
each choice with the reason for it. `recipe: auto` in a config (the shipped `auto` recipe has it)
fills in every key of `AUTO_KEYS` the config or its overrides leave unset, and prints the plan.

The rules, and what they rest on:
- working size: the photos' median longer side, rounded down to a multiple of 32 (upsampling
  adds pixels to compute, not detail), raised towards the size at which the smallest objects
  (10th percentile) span MIN_OBJECT_PX, within the device's cap (CPU 384: the size the measured
  cpu-lite recipe trains at in a short budget; GPU 512). On a CPU the cap rises to the photos'
  own size, up to CPU_SMALL_OBJECT_CAP, when the smallest objects would span fewer than
  MIN_OBJECT_PX at 384: training crops keep a sample's cost, and only validation and inference
  pay for the pixels (FUSeg wounds, 512 px photos, 15 min: test Dice +0.3 and +0.2 points at
  512 against 384, two seeds; Figaro hair, whose objects are large, lost 0.6 at 512: not
  raised there; benchmarks/real_data.py, README round 6).
- crop: on a CPU, crops of CPU_CROP px keep the cost of a sample at 256^2 px (2.25x the photos
  per second of whole 384 px photos, benchmarks/real_data.py); on a GPU a crop holds the large
  objects (90th percentile) with half their size again of context, and is at least half the
  working size. A crop of nearly the whole photo is dropped (whole photos: on PAD-UFES-20's
  300 px photos, whole 288 px photos beat 256 px crops of 384 px, benchmarks/real_data.py).
- batch: 8 samples on a CPU up to 320^2 px a sample (16 on a GPU up to 512^2 px), fewer for
  larger samples (in proportion to their pixels), and at most a quarter of the photos so that
  an epoch has several steps.
- epochs: about TARGET_STEPS optimiser steps (small sets get more epochs, large sets fewer),
  early stopping after a fifth of them without improvement. With train.budget_minutes the
  epochs are the most the budget may run.
- class balance: the share of crops centred on a labelled patch (input.crop_on_labels) grows
  when the labelled pixels are rare, so rare classes are seen every step.
- decoder: smp's default 256..16 decoder, unless a CPU run with train.budget_minutes would get
  fewer than FEW_EPOCHS epochs of it (one training step is timed on this machine, at the planned
  sample size and batch): then cpu-lite's slim 64..16 decoder, which trains about 1.7x the
  photos per second on a CPU without bf16 (1.35-1.65x in whole runs). The default won at
  15 min where it got about 10 epochs (bf16 CPU, README round 4); where it got 2-2.5 (fp32 CPU,
  README round 8) the slim one tied on lesions and hair and won wounds by 3 points.
- frozen stages: with the slim decoder (a CPU budget that buys few epochs), the encoder's first
  FROZEN_STAGES stages (stem to stride 4) keep their ImageNet weights, as detectron2 freezes
  stem and res2 by default: their backward pass, the costliest at full resolution, is skipped
  (a step 1.31x as fast at 8 x 256^2 px on an fp32 CPU, alone; benchmarks/frozen_stages.py).
  15 min on an fp32 CPU, mean of two seeds, test Dice: wounds 0.848 -> 0.861, lesions 0.808 ->
  0.814, hair 0.943 -> 0.942 (README round 9; the two sides ran in different sessions). Random
  or non-timm encoders, and runs not so short, train the whole encoder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from dermaseg.datasets.fingerprint import Fingerprint
from dermaseg.train.config import ModelConfig

MIN_OBJECT_PX = 16  # the smallest objects should span this many pixels at the working size
SIZE_CAP = {"cpu": 384, "cuda": 512}
CPU_SMALL_OBJECT_CAP = 512  # the CPU cap for photos whose smallest objects need more pixels
MIN_SIZE = 128
CPU_CROP = 256
CONTEXT = 1.5  # a crop holds a large object and half its size again around it
WHOLE_PHOTO = 7 / 8  # a crop at least this share of the working size: use whole photos
BATCH_AT = {"cpu": (8, 320), "cuda": (16, 512)}  # (batch, up to this sample side)
TARGET_STEPS = 4000
EPOCHS_RANGE = (20, 300)
RARE_FOREGROUND = 0.005  # labelled pixels below this share of all pixels count as rare
DEFAULT_DECODER = ModelConfig.model_fields["decoder_channels"].default  # smp's 256..16
SLIM_DECODER = [64, 48, 32, 24, 16]  # cpu-lite's
FEW_EPOCHS = 5  # a budget that buys the default decoder fewer epochs takes the slim one
FROZEN_STAGES = 2  # ... and trains the encoder from stride 8 on (detectron2's FREEZE_AT=2)

# seconds of one training step of a U-Net with these decoder channels, at (side, batch)
StepTimer = Callable[[list[int], int, int], float]

AUTO_KEYS = (
    "input.size",
    "input.crop",
    "input.crop_on_labels",
    "train.batch_size",
    "train.epochs",
    "train.early_stop_patience",
    "model.decoder_channels",
    "model.frozen_stages",
)


@dataclass
class Plan:
    """The chosen settings (dotted keys) and, for each, why."""

    settings: dict[str, object] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    given: dict[str, object] = field(default_factory=dict)  # set by the config: kept

    def choose(self, key: str, value: object, reason: str) -> object:
        """Record a choice and return the value in force (the config's, where it sets one)."""
        if key in self.given:
            value, reason = self.given[key], "as the config sets it"
        self.settings[key] = value
        self.reasons[key] = reason
        return value

    def lines(self) -> list[str]:
        return [f"{key} = {self.settings[key]}: {self.reasons[key]}" for key in self.settings]


def unset_keys(settings: dict, keys: tuple[str, ...]) -> list[str]:
    """The dotted `keys` that the nested `settings` mapping does not set."""

    def is_set(key: str) -> bool:
        node = settings
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [key for key in keys if not is_set(key)]


def _down32(value: float) -> int:
    return max(32, int(value) // 32 * 32)


def _up32(value: float) -> int:
    return max(32, math.ceil(value / 32) * 32)


def plan(
    fp: Fingerprint,
    device: str = "cpu",
    given: dict | None = None,
    budget_minutes: float | None = None,
    time_step: StepTimer | None = None,
    freezable: bool = True,
) -> Plan:
    """Choose size, crop, batch, schedule and decoder for a dataset with fingerprint `fp`; the
    `given` settings (dotted keys) are kept and the later choices follow from them. With a
    `budget_minutes` on a CPU, `time_step` measures the default decoder's step here;
    `freezable`: the encoder's first stages can be frozen (a pretrained timm encoder)."""
    device = "cuda" if device == "cuda" else "cpu"
    out = Plan(given=dict(given or {}))
    usual_cap = SIZE_CAP[device]
    native = _down32(fp.long_side_median)
    for_small = _up32(MIN_OBJECT_PX / fp.object_size_p10) if fp.object_size_p10 > 0 else native
    raised = device == "cpu" and for_small > usual_cap and native > usual_cap
    cap = min(CPU_SMALL_OBJECT_CAP, native) if raised else usual_cap
    size = max(MIN_SIZE, min(cap, max(native, min(for_small, 2 * native))))
    why = f"photos' median longer side {fp.long_side_median:.0f} px"
    if raised:
        why += (
            f"; the CPU cap {usual_cap} raised to {size}: the smallest tenth of objects "
            f"({fp.object_size_p10:.1%} of the photo) would span "
            f"{fp.object_size_p10 * usual_cap:.0f} px at {usual_cap}, and crops keep a "
            f"training sample's cost"
        )
    if size < native:
        why += f", capped at {cap} on {device.upper()}"
        if for_small > size:
            why += (
                f" (the smallest tenth of objects, {fp.object_size_p10:.1%} of the photo, "
                f"span {fp.object_size_p10 * size:.0f} px here; {for_small} would give them "
                f"{MIN_OBJECT_PX})"
            )
    elif size > native:
        why += (
            f"; enlarged so the smallest tenth of objects ({fp.object_size_p10:.1%} of the "
            f"photo) span {MIN_OBJECT_PX} px"
        )
    elif not raised:
        why += " (not upsampled: that adds pixels to compute, not detail)"
    size = out.choose("input.size", size, why)

    large = fp.object_size_p90 * size * CONTEXT
    if device == "cpu":
        crop = CPU_CROP
        why = f"a sample costs {crop}^2 px on a CPU ({(crop / size) ** 2:.0%} of a whole photo)"
    else:
        crop = _up32(max(large, size / 2))
        why = (
            f"holds the large objects ({fp.object_size_p90:.0%} of the photo = "
            f"{fp.object_size_p90 * size:.0f} px) with context, at "
            f"{(crop / size) ** 2:.0%} of the pixels of a whole photo"
        )
    if crop >= WHOLE_PHOTO * size:
        crop, why = None, f"whole photos: a {crop} px crop is nearly the whole {size} px photo"
    crop = out.choose("input.crop", crop, why)
    side = min(crop or size, size)

    rare = fp.foreground_fraction < RARE_FOREGROUND
    share = 0.7 if rare else 0.5
    out.choose(
        "input.crop_on_labels",
        share,
        f"labelled pixels are {fp.foreground_fraction:.1%} of all"
        + (" (rare): most crops centred on a patch" if rare else "; half the crops on a patch")
        + ("" if side != size else " (applies only with crops)"),
    )

    base, at = BATCH_AT[device]
    batch = max(2, min(base, round(base * (at / side) ** 2)))
    why = f"{base} samples up to {at}^2 px on {device.upper()}" + (
        f", fewer at {side}^2 px" if batch < base else f"; {side}^2 px here"
    )
    if fp.photos // 4 < batch:
        batch = max(2, fp.photos // 4)
        why += f", at most a quarter of the {fp.photos} photos (and 2)"
    batch = out.choose("train.batch_size", batch, why)

    steps_per_epoch = math.ceil(fp.photos / batch)
    epochs = min(EPOCHS_RANGE[1], max(EPOCHS_RANGE[0], math.ceil(TARGET_STEPS / steps_per_epoch)))
    epochs = out.choose(
        "train.epochs",
        epochs,
        f"about {TARGET_STEPS} steps of {steps_per_epoch} per epoch for {fp.photos} photos "
        f"(kept in {EPOCHS_RANGE[0]}..{EPOCHS_RANGE[1]}; with train.budget_minutes, the most)",
    )
    out.choose(
        "train.early_stop_patience",
        max(10, epochs // 5),
        "a fifth of the epochs without a better validation Dice (at least 10)",
    )
    few = _choose_decoder(out, device, side, batch, steps_per_epoch, budget_minutes, time_step)
    _choose_frozen_stages(out, few, freezable)
    return out


def _choose_frozen_stages(out: Plan, few_epochs: bool, freezable: bool) -> None:
    """The first encoder stages frozen where a CPU budget buys few epochs (and they can be)."""
    if few_epochs and freezable:
        out.choose(
            "model.frozen_stages",
            FROZEN_STAGES,
            f"the first {FROZEN_STAGES} encoder stages keep their pretrained weights for a "
            "budget of few epochs (their backward pass skipped: 1.31x a step, alone on a CPU)",
        )
        return
    why = (
        "no CPU budget of few epochs was planned" if freezable else "not a pretrained timm encoder"
    )
    out.choose("model.frozen_stages", 0, f"the whole encoder trains ({why})")


def _choose_decoder(
    out: Plan,
    device: str,
    side: int,
    batch: int,
    steps_per_epoch: int,
    budget_minutes: float | None,
    time_step: StepTimer | None,
) -> bool:
    """The default decoder, or the slim one where a CPU budget buys the default too few epochs;
    True where it does."""
    key, default = "model.decoder_channels", "smp's default decoder"
    if key in out.given or device != "cpu" or budget_minutes is None or time_step is None:
        why = (
            "on a GPU"
            if device != "cpu"
            else "no train.budget_minutes to fit"
            if budget_minutes is None
            else "its training step was not timed"
        )
        out.choose(key, DEFAULT_DECODER, f"{default} ({why})")
        return False
    seconds = time_step(DEFAULT_DECODER, side, batch)
    epochs = budget_minutes * 60 / (seconds * steps_per_epoch)
    timed = (
        f"a step of {batch} x {side}^2 px took {seconds:.2f} s here, so "
        f"{budget_minutes:g} min buy about {epochs:.1f} epochs of {steps_per_epoch} steps"
    )
    if epochs >= FEW_EPOCHS:
        out.choose(key, DEFAULT_DECODER, f"{default}: {timed}")
        return False
    out.choose(key, SLIM_DECODER, f"the slim decoder: with {default}, {timed} (< {FEW_EPOCHS})")
    return True
