"""The `auto` recipe: fingerprint -> choices (pure, on synthetic fingerprints), the fingerprint of
real files, and `recipe: auto` filling only the keys a config leaves unset."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.fingerprint import Fingerprint, fingerprint, object_sizes
from dermaseg.errors import DermasegError
from dermaseg.train.auto import AUTO_KEYS, DEFAULT_DECODER, SLIM_DECODER, plan, unset_keys
from dermaseg.train.config import dump_config, load_run_config
from tests.conftest import write_image

# PAD-UFES-20-like: small phone photos, large lesions (measured on the real training split)
LESIONS = Fingerprint(
    photos=511,
    sampled=200,
    long_side_median=300,
    long_side_p10=240,
    short_side_median=230,
    objects=210,
    object_size_p10=0.11,
    object_size_median=0.28,
    object_size_p90=0.42,
    foreground_fraction=0.095,
    photos_with_foreground=1.0,
    rarest_class_fraction=0.095,
)
# FUSeg-like: 512 px photos, small wounds, rare labelled pixels
WOUNDS = replace(
    LESIONS,
    photos=668,
    long_side_median=512,
    long_side_p10=512,
    short_side_median=512,
    object_size_p10=0.024,
    object_size_median=0.065,
    object_size_p90=0.15,
    foreground_fraction=0.004,
    rarest_class_fraction=0.004,
)


def test_small_photos_are_not_upsampled_and_large_objects_train_on_whole_photos() -> None:
    chosen = plan(LESIONS, "cpu").settings
    assert chosen["input.size"] == 288  # 300 px photos: the multiple of 32 below
    assert chosen["input.crop"] is None  # a 256 px crop is nearly the whole 288 px photo
    assert chosen["train.batch_size"] == 8  # up to 320^2 px
    assert chosen["train.epochs"] == 63  # ~4000 steps of 64
    assert chosen["train.early_stop_patience"] == 12  # a fifth of the epochs


def test_large_photos_of_small_objects_crop_and_favour_labelled_crops() -> None:
    cpu = plan(WOUNDS, "cpu")
    assert cpu.settings["input.size"] == 512  # 2.4 % objects would span 9 px at CPU's 384
    assert "cap 384 raised to 512" in cpu.reasons["input.size"]
    hair = plan(replace(WOUNDS, object_size_p10=0.06, object_size_p90=0.62), "cpu")
    assert hair.settings["input.size"] == 384  # large objects: 23 px at 384, the cap holds
    assert "capped at 384" in hair.reasons["input.size"]
    huge_photos = plan(replace(WOUNDS, long_side_median=2000), "cpu")
    assert huge_photos.settings["input.size"] == 512  # raised no further than 512
    small_photos = plan(replace(WOUNDS, long_side_median=300), "cpu")
    assert small_photos.settings["input.size"] == 384  # upsampled only up to the usual cap
    assert cpu.settings["input.crop"] == 256
    assert cpu.settings["input.crop_on_labels"] == 0.7  # 0.4 % labelled pixels: rare
    assert plan(LESIONS, "cpu").settings["input.crop_on_labels"] == 0.5
    assert cpu.settings["train.batch_size"] == 8
    gpu = plan(WOUNDS, "cuda").settings
    assert gpu["input.size"] == 512 and gpu["input.crop"] == 256  # half the size: 15 % objects
    big_objects = plan(replace(WOUNDS, object_size_p90=0.45), "cuda").settings
    assert big_objects["input.crop"] == 352  # 45 % of 512 px with half again of context
    huge_objects = plan(replace(WOUNDS, object_size_p90=0.7), "cuda").settings
    assert huge_objects["input.crop"] is None
    assert gpu["train.batch_size"] == 16
    whole = plan(WOUNDS, "cpu", {"input.size": 384, "input.crop": None})
    assert whole.settings["train.batch_size"] == 6  # 8 * (320 / 384)^2 = 5.6
    assert whole.reasons["input.crop"] == "as the config sets it"


def test_small_sets_get_more_epochs_and_small_batches() -> None:
    tiny = plan(replace(LESIONS, photos=20), "cpu").settings
    assert tiny["train.batch_size"] == 5  # at most a quarter of the photos
    assert tiny["train.epochs"] == 300  # 4 steps an epoch: the most epochs allowed
    assert tiny["train.early_stop_patience"] == 60
    big = plan(replace(LESIONS, photos=20000), "cpu").settings
    assert big["train.epochs"] == 20


def test_tiny_objects_raise_the_size_up_to_twice_the_photo() -> None:
    small = replace(LESIONS, long_side_median=160, object_size_p10=0.05)
    chosen = plan(small, "cpu")
    assert chosen.settings["input.size"] == 320  # 16 px / 5 % = 320, twice the 160 px photo
    assert "enlarged" in chosen.reasons["input.size"]
    assert all(key in chosen.reasons for key in AUTO_KEYS)
    assert len(chosen.lines()) == len(AUTO_KEYS)


def test_unset_keys_reads_nested_settings() -> None:
    settings = {"input": {"size": 512}, "train": {"epochs": 3, "batch_size": None}}
    assert unset_keys(settings, AUTO_KEYS) == [
        "input.crop",
        "input.crop_on_labels",
        "train.early_stop_patience",
        "model.decoder_channels",
        "model.frozen_stages",
    ]


def test_a_cpu_budget_that_buys_few_epochs_of_the_default_decoder_takes_the_slim_one() -> None:
    timed: list[tuple] = []

    def timer(seconds: float):
        def time_step(decoder: list[int], side: int, batch: int) -> float:
            timed.append((decoder, side, batch))
            return seconds

        return time_step

    key = "model.decoder_channels"
    slow = plan(LESIONS, "cpu", budget_minutes=15, time_step=timer(5.0))
    assert timed == [(DEFAULT_DECODER, 288, 8)]  # the planned sample size and batch
    assert slow.settings[key] == SLIM_DECODER  # 900 s / (5 s x 64 steps) = 2.8 epochs
    assert "about 2.8 epochs of 64 steps" in slow.reasons[key]
    fast = plan(LESIONS, "cpu", budget_minutes=15, time_step=timer(2.0))  # 7.0 epochs
    assert fast.settings[key] == DEFAULT_DECODER and "7.0 epochs" in fast.reasons[key]
    timed.clear()
    no_budget = plan(LESIONS, "cpu", time_step=timer(5.0))
    gpu = plan(LESIONS, "cuda", budget_minutes=15, time_step=timer(5.0))
    given = plan(LESIONS, "cpu", {key: [96, 64, 48, 32, 16]}, 15, timer(5.0))
    assert timed == []  # nothing to decide: no step is timed
    assert no_budget.settings[key] == gpu.settings[key] == DEFAULT_DECODER
    assert "no train.budget_minutes" in no_budget.reasons[key] and "GPU" in gpu.reasons[key]
    assert given.settings[key] == [96, 64, 48, 32, 16]
    assert given.reasons[key] == "as the config sets it"
    # the first encoder stages freeze with the slim decoder only, and only where they can
    stages = "model.frozen_stages"
    assert slow.settings[stages] == 2 and "backward pass skipped" in slow.reasons[stages]
    for other in (fast, no_budget, gpu, given):
        assert other.settings[stages] == 0
    resnet = plan(LESIONS, "cpu", budget_minutes=15, time_step=timer(5.0), freezable=False)
    assert resnet.settings[key] == SLIM_DECODER and resnet.settings[stages] == 0
    assert "not a pretrained timm encoder" in resnet.reasons[stages]
    kept = plan(LESIONS, "cpu", {stages: 1}, 15, timer(5.0))
    assert kept.settings[stages] == 1 and kept.reasons[stages] == "as the config sets it"


def _lesion_dataset(root: Path, n: int = 8) -> Path:
    """Photos of 200x150 px with one 60x50 px lesion each, and a two-class dataset.yaml."""
    rng = np.random.default_rng(0)
    for i in range(n):
        mask = np.zeros((150, 200), np.uint8)
        mask[40:90, 50:110] = 255
        write_image(root / "images" / f"p{i}.jpg", rng.integers(0, 255, (150, 200, 3), np.uint8))
        write_image(root / "masks" / f"p{i}.png", mask)
    (root / "dataset.yaml").write_text(
        "format: masks\nimages: images\nmasks: masks\n"
        "classes:\n  - {name: background, color: [0, 0, 0]}\n"
        "  - {name: lesion, color: [255, 0, 0]}\n"
        "value_map: {0: background, 255: lesion}\n"
    )
    return root


def test_fingerprint_of_real_files(tmp_path: Path) -> None:
    fp = fingerprint(Dataset.open(_lesion_dataset(tmp_path / "ds")), split="all-missing")
    assert fp.photos == 8 and fp.sampled == 8 and fp.objects == 8
    assert fp.long_side_median == 200 and fp.short_side_median == 150
    assert fp.object_size_median == pytest.approx(np.sqrt(60 * 50) / 200)
    assert fp.foreground_fraction == pytest.approx(60 * 50 / (200 * 150))
    assert fp.photos_with_foreground == 1.0
    two = np.zeros((20, 40), np.uint8)
    two[1:5, 1:5], two[5:13, 10:18], two[0, 39] = 1, 1, 255  # 255: ignored, not an object
    two[18, 30:33] = 1  # a 3-pixel speck: annotation noise
    assert sorted(object_sizes(two)) == pytest.approx([4 / 40, 8 / 40])


def test_auto_recipe_fills_only_unset_keys_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = _lesion_dataset(tmp_path / "ds")
    config = load_run_config("auto", [f"data={data}", "train.device=cpu", "input.crop=128"])
    assert config.recipe == "auto"
    assert config.input.size == 192  # 200 px photos
    assert config.input.crop == 128  # kept as set
    assert config.train.batch_size == 2  # at most a quarter of the 6 training photos, and 2
    told = capsys.readouterr().err
    assert "input.size = 192" in told and "kept as the config sets them: input.crop" in told
    assert "128^2 px here" in told  # the batch follows the crop the config sets
    assert config.export.tta == "mirror"  # the recommended recipe exports with mirror TTA
    assert config.model.decoder_channels == DEFAULT_DECODER  # no budget: the default decoder
    assert "no train.budget_minutes to fit" in told
    # a budget of 0.6 s buys a real, timed step on this machine too few epochs: the slim decoder
    brief = ["train.device=cpu", "train.budget_minutes=0.01"]
    assert load_run_config("auto", [f"data={data}", *brief]).model.decoder_channels == SLIM_DECODER
    told = capsys.readouterr().err
    assert "model.decoder_channels = [64, 48, 32, 24, 16]: the slim decoder" in told
    assert "model.frozen_stages = 2: the first 2 encoder stages" in told
    resnet = ["model.encoder=resnet18", "model.encoder_weights=null"]
    assert load_run_config("auto", [f"data={data}", *brief, *resnet]).model.frozen_stages == 0
    random = load_run_config("auto", [f"data={data}", *brief, "model.encoder_weights=null"])
    assert random.model.frozen_stages == 0  # random weights are not worth keeping
    assert "not a pretrained timm encoder" in capsys.readouterr().err
    # a quoted budget is the budget training reads (pydantic parses it), so it is planned for too
    quoted = ["train.device=cpu", "train.budget_minutes='0.01'"]
    assert load_run_config("auto", [f"data={data}", *quoted]).train.budget_minutes == 0.01
    assert "the slim decoder" in capsys.readouterr().err
    for bad in ("train.budget_minutes=soon", "model.encoder_weigths=imagenet-lite0"):
        with pytest.raises(DermasegError, match=bad.split(".")[1].split("=")[0]):
            load_run_config("auto", [f"data={data}", "train.budget_minutes=1", bad])
    fixed = load_run_config("cpu-lite", [f"data={data}"])
    assert fixed.recipe == "fixed" and fixed.input.size == 384
    assert fixed.export.tta == "none"
    with pytest.raises(DermasegError, match=r"augment\.vflip is 0"):
        load_run_config("auto", [f"data={data}", "augment.vflip=0"])  # mirror TTA needs vflip
    assert load_run_config("auto", [f"data={data}", "augment.vflip=0", "export.tta=flip"])


def test_a_saved_run_config_is_not_planned_again(tmp_path: Path, capsys) -> None:
    """A resumed run keeps the plan it started with (a key `auto` plans since: its default)."""
    data = _lesion_dataset(tmp_path / "ds")
    brief = [f"data={data}", "train.device=cpu", "train.budget_minutes=0.01"]
    saved = yaml.safe_load(dump_config(load_run_config("auto", brief)))
    assert saved["recipe"] == "auto" and saved["model"]["frozen_stages"] == 2
    del saved["model"]["frozen_stages"]  # a run folder from before auto planned it
    old_run = tmp_path / "config.yaml"
    old_run.write_text(yaml.safe_dump(saved))
    capsys.readouterr()
    assert load_run_config(str(old_run), plan_auto=False).model.frozen_stages == 0
    assert "auto recipe" not in capsys.readouterr().err
    load_run_config(str(old_run))
    assert "auto recipe" in capsys.readouterr().err  # planned again otherwise
