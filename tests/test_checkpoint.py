"""Checkpoints: safetensors + JSON round trips, exact resume, refusals and atomic saves."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors.torch import load_file  # noqa: E402
from torch import nn  # noqa: E402

from dermaseg import fileio  # noqa: E402
from dermaseg.errors import InputError  # noqa: E402
from dermaseg.train import checkpoint as ckpt  # noqa: E402

META = {"epoch": 1, "taxonomy": [{"id": 0, "name": "background"}], "metrics": {"dice": 0.5}}
# The bytes of pickle.dumps(1, protocol=4): a tiny but real pickle, written without importing it.
PICKLE_BYTES = b"\x80\x04K\x01."


def tiny_net() -> nn.Module:
    """Two convs with batch norm and dropout: float and int64 tensors, and randomness."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Dropout(0.5),
        nn.Conv2d(4, 2, 1),
    )


def warmup(step: int) -> float:
    return min(1.0, (step + 1) / 3)


def make_training(seed: int) -> tuple[nn.Module, torch.optim.AdamW, object, object]:
    torch.manual_seed(seed)
    model = tiny_net()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)
    scaler = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=1)
    return model, optimizer, scheduler, scaler


def train_step(model: nn.Module, optimizer, scheduler, scaler) -> None:
    """One step whose input draws on the torch, numpy and python RNGs, as a data loader would."""
    x = torch.randn(2, 3, 8, 8) + float(np.random.rand()) + random.random()
    loss = model(x).pow(2).mean()
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    optimizer.zero_grad()


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key


def save_simple(stem: Path, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    state = tiny_net().state_dict()
    ckpt.save_checkpoint(stem, state, META)
    return state


def test_weights_round_trip_bit_identical(tmp_path: Path) -> None:
    model = tiny_net()
    state = dict(model.state_dict())
    state["half"] = torch.randn(3, 5).half()
    state["transposed"] = torch.randn(4, 6).T  # not contiguous
    state["tied"] = state["0.weight"]  # shares storage with another entry
    ckpt.save_checkpoint(tmp_path / "m", state, META)
    for path in (tmp_path / "m", tmp_path / "m.safetensors", tmp_path / "m.json"):
        loaded = ckpt.load_checkpoint(path)
        assert_same_state(state, loaded.model_state)
        assert loaded.meta == META
        assert loaded.train_state is None
    sidecar = json.loads((tmp_path / "m.json").read_text())
    assert set(sidecar["sha256"]) == {"weights"}
    assert not (tmp_path / "m.state.safetensors").exists()


def test_resume_is_bit_identical(tmp_path: Path) -> None:
    seed_all(0)
    model_a, *objects_a = make_training(seed=0)
    for _ in range(3):
        train_step(model_a, *objects_a)

    seed_all(0)
    model_b, *objects_b = make_training(seed=0)
    train_step(model_b, *objects_b)
    state = ckpt.capture_train_state(*objects_b, epoch=0, step_in_epoch=1, global_step=1)
    ckpt.save_checkpoint(tmp_path / "last", model_b.state_dict(), META, state)
    del model_b, objects_b

    seed_all(123)  # a fresh process: other seeds, other initial weights
    model_c, *objects_c = make_training(seed=123)
    loaded = ckpt.load_checkpoint(tmp_path / "last.json")
    model_c.load_state_dict(loaded.model_state)
    ckpt.restore_train_state(*objects_c, loaded.train_state)
    assert loaded.train_state.global_step == 1
    for _ in range(2):
        train_step(model_c, *objects_c)

    assert_same_state(model_a.state_dict(), model_c.state_dict())
    optimizer_a, scheduler_a, scaler_a = objects_a
    optimizer_c, scheduler_c, scaler_c = objects_c
    assert scheduler_c.get_last_lr() == scheduler_a.get_last_lr()
    assert scaler_c.state_dict() == scaler_a.state_dict()
    assert optimizer_c.param_groups[0]["betas"] == (0.8, 0.95)
    for p_a, p_c in zip(model_a.parameters(), model_c.parameters(), strict=True):
        for name, value in optimizer_a.state[p_a].items():
            assert torch.equal(value, optimizer_c.state[p_c][name]), name


def test_optimizer_tensors_are_in_safetensors_structure_in_json(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    train_step(model, optimizer, scheduler, scaler)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler, best_metric=0.25)
    ckpt.save_checkpoint(tmp_path / "s", model.state_dict(), META, state)
    keys = set(load_file(tmp_path / "s.state.safetensors"))
    assert {"optimizer.state.0.exp_avg", "optimizer.state.0.step", "rng.torch_cpu"} <= keys
    sidecar = json.loads((tmp_path / "s.json").read_text())
    assert sidecar["train_state"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-2 / 3)
    assert sidecar["train_state"]["best_metric"] == 0.25
    restored = ckpt.load_checkpoint(tmp_path / "s").train_state
    assert restored.optimizer["param_groups"] == optimizer.state_dict()["param_groups"]
    assert restored.scheduler == scheduler.state_dict()


def test_saving_without_train_state_drops_a_stale_state_file(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler)
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META, state)
    assert (tmp_path / "c.state.safetensors").exists()
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META)
    assert not (tmp_path / "c.state.safetensors").exists()
    assert ckpt.load_checkpoint(tmp_path / "c").train_state is None


def test_rng_state_round_trip() -> None:
    seed_all(7)
    saved = ckpt.capture_rng_state()
    first = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    seed_all(8)
    ckpt.restore_rng_state(saved)
    again = (torch.rand(3), np.random.rand(3), [random.random() for _ in range(3)])
    assert torch.equal(first[0], again[0])
    assert np.array_equal(first[1], again[1])
    assert first[2] == again[2]


@pytest.mark.parametrize("content", [PICKLE_BYTES, b"PK\x03\x04\x14\x00\x00\x00\x08\x00zip"])
def test_refuses_pickle_or_zip_renamed_to_safetensors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(InputError, match=r"pickle files are refused") as info:
        ckpt.load_checkpoint(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_refuses_a_torch_pt_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(PICKLE_BYTES)
    with pytest.raises(InputError, match=r"not a safetensors file"):
        ckpt.load_checkpoint(path)


def test_refuses_missing_sidecar(tmp_path: Path) -> None:
    save_simple(tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(InputError, match=r"m\.json: missing"):
        ckpt.load_checkpoint(tmp_path / "m.safetensors")


def test_refuses_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing\.safetensors: missing"):
        ckpt.load_checkpoint(tmp_path / "nothing")


def test_refuses_malformed_sidecar(tmp_path: Path) -> None:
    save_simple(tmp_path / "m")
    (tmp_path / "m.json").write_text('{"format": "dermaseg-checkpoint", ')
    with pytest.raises(InputError, match=r"m\.json: not valid JSON") as info:
        ckpt.load_checkpoint(tmp_path / "m")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_detects_damaged_weights(tmp_path: Path, damage: str) -> None:
    save_simple(tmp_path / "m")
    path = tmp_path / "m.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"m\.safetensors: checkpoint files do not match"):
        ckpt.load_checkpoint(tmp_path / "m")


def test_detects_damaged_train_state(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler)
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META, state)
    path = tmp_path / "c.state.safetensors"
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(InputError, match=r"c\.state\.safetensors: checkpoint files do not match"):
        ckpt.load_checkpoint(tmp_path / "c")


def test_failed_encoding_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    old = save_simple(tmp_path / "m", seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_dumps(*args, **kwargs):
        raise TypeError("simulated failure")

    monkeypatch.setattr(ckpt.json, "dumps", broken_dumps)
    with pytest.raises(TypeError, match="simulated"):
        save_simple(tmp_path / "m", seed=1)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert_same_state(old, ckpt.load_checkpoint(tmp_path / "m").model_state)


def test_failed_sidecar_write_is_detected_and_leaves_no_partial_file(
    tmp_path: Path, monkeypatch
) -> None:
    save_simple(tmp_path / "m", seed=0)
    old_sidecar = (tmp_path / "m.json").read_bytes()

    def half_write(path, text, **kwargs):
        with fileio.atomic_open(path, "w") as handle:
            handle.write(text[: len(text) // 2])
            raise OSError("disk full (simulated)")

    monkeypatch.setattr(ckpt, "write_text", half_write)
    with pytest.raises(OSError, match="simulated"):
        save_simple(tmp_path / "m", seed=1)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    assert (tmp_path / "m.json").read_bytes() == old_sidecar
    with pytest.raises(InputError, match=r"interrupted write\?"):
        ckpt.load_checkpoint(tmp_path / "m")


def test_never_unpickles(tmp_path: Path, monkeypatch) -> None:
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load called")

    monkeypatch.setattr(torch, "load", forbidden)
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler)
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META, state)
    assert ckpt.load_checkpoint(tmp_path / "c").train_state is not None
    source = Path(ckpt.__file__).read_text()
    assert "import pickle" not in source
    assert "torch.load" not in source
