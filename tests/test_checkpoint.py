"""Checkpoints: one safetensors file round trips, exact resume, refusals, atomic saves, and
version-1 checkpoints (weights + state + JSON sidecar) still read."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from safetensors.torch import save as save_safetensors  # noqa: E402
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


def header_content(path: Path) -> dict:
    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["format"] == ckpt.FORMAT and metadata["format_version"] == "2"
    return json.loads(metadata["dermaseg.checkpoint"])


def save_version_1(stem: Path, state: dict, sidecar: dict | None = None) -> None:
    """A checkpoint as dermaseg wrote them before format version 2: weights and a sidecar."""
    import hashlib

    weights = save_safetensors({k: v.contiguous() for k, v in state.items()})
    stem.with_name(stem.name + ".safetensors").write_bytes(weights)
    sidecar = sidecar or {
        "format": ckpt.FORMAT,
        "format_version": 1,
        "meta": META,
        "sha256": {"weights": hashlib.sha256(weights).hexdigest()},
    }
    stem.with_name(stem.name + ".json").write_text(json.dumps(sidecar))


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
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # one file, one rename
    assert header_content(tmp_path / "m.safetensors") == {"meta": META}


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
    keys = set(load_file(tmp_path / "s.safetensors"))
    expected = {"optimizer.state.0.exp_avg", "optimizer.state.0.step", "rng.torch_cpu"}
    assert {ckpt.STATE_PREFIX + key for key in expected} <= keys
    assert set(model.state_dict()) <= keys
    content = header_content(tmp_path / "s.safetensors")
    assert content["train_state"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2e-2 / 3)
    assert content["train_state"]["best_metric"] == 0.25
    restored = ckpt.load_checkpoint(tmp_path / "s").train_state
    assert restored.optimizer["param_groups"] == optimizer.state_dict()["param_groups"]
    assert restored.scheduler == scheduler.state_dict()


def test_saving_without_train_state_drops_the_old_state(tmp_path: Path) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler)
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META, state)
    assert ckpt.load_checkpoint(tmp_path / "c").train_state is not None
    ckpt.save_checkpoint(tmp_path / "c", model.state_dict(), META)
    assert ckpt.load_checkpoint(tmp_path / "c").train_state is None
    assert set(load_file(tmp_path / "c.safetensors")) == set(model.state_dict())


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


def test_reads_version_1_checkpoints(tmp_path: Path) -> None:
    state = tiny_net().state_dict()
    save_version_1(tmp_path / "old", state)
    for path in (tmp_path / "old", tmp_path / "old.json", tmp_path / "old.safetensors"):
        loaded = ckpt.load_checkpoint(path)
        assert_same_state(state, loaded.model_state)
        assert loaded.meta == META and loaded.train_state is None
    # saving over it leaves one version-2 file and no stale sidecar
    ckpt.save_checkpoint(tmp_path / "old", state, {"epoch": 2})
    assert [p.name for p in tmp_path.iterdir()] == ["old.safetensors"]
    assert ckpt.load_checkpoint(tmp_path / "old").meta == {"epoch": 2}


def test_refuses_plain_safetensors_without_sidecar(tmp_path: Path) -> None:
    (tmp_path / "m.safetensors").write_bytes(save_safetensors({"w": torch.zeros(2)}))
    with pytest.raises(InputError, match=r"m\.json: missing"):
        ckpt.load_checkpoint(tmp_path / "m.safetensors")


def test_refuses_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nothing\.safetensors: missing"):
        ckpt.load_checkpoint(tmp_path / "nothing")


def test_refuses_malformed_version_1_sidecar(tmp_path: Path) -> None:
    save_version_1(tmp_path / "m", tiny_net().state_dict())
    (tmp_path / "m.json").write_text('{"format": "dermaseg-checkpoint", ')
    with pytest.raises(InputError, match=r"m\.json: invalid JSON at line 1") as info:
        ckpt.load_checkpoint(tmp_path / "m")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("where", ["sidecar", "header"])
def test_deeply_nested_metadata_is_one_line(tmp_path: Path, where: str) -> None:
    """JSON nested 50,000 deep (a RecursionError in json.loads) is an InputError."""
    deep = "[" * 50_000 + "]" * 50_000
    state = {"w": torch.zeros(2)}
    if where == "sidecar":
        save_version_1(tmp_path / "m", state)
        (tmp_path / "m.json").write_text('{"format": "dermaseg-checkpoint", "meta": ' + deep + "}")
    else:
        tensors = save_safetensors(state)
        size = int.from_bytes(tensors[:8], "little")
        metadata = {"format": ckpt.FORMAT, "format_version": "2", "dermaseg.checkpoint": deep}
        metadata["tensors_sha256"] = ckpt._sha256(tensors[8 + size :])
        (tmp_path / "m.safetensors").write_bytes(save_safetensors(state, metadata=metadata))
    with pytest.raises(InputError, match="nested too deeply") as info:
        ckpt.load_checkpoint(tmp_path / "m")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_detects_damaged_checkpoint(tmp_path: Path, damage: str) -> None:
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler)
    ckpt.save_checkpoint(tmp_path / "m", model.state_dict(), META, state)
    path = tmp_path / "m.safetensors"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"m\.safetensors: (damaged|not a valid)"):
        ckpt.load_checkpoint(tmp_path / "m")


def test_failed_encoding_leaves_previous_checkpoint_intact(tmp_path: Path, monkeypatch) -> None:
    old = save_simple(tmp_path / "m", seed=0)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken_json(*args, **kwargs):
        raise TypeError("simulated failure")

    monkeypatch.setattr(ckpt, "json_text", broken_json)
    with pytest.raises(TypeError, match="simulated"):
        save_simple(tmp_path / "m", seed=1)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    assert_same_state(old, ckpt.load_checkpoint(tmp_path / "m").model_state)


@pytest.mark.parametrize("fail_at", ["write", "fsync", "rename"])
def test_crash_at_any_point_of_a_save_keeps_a_resumable_checkpoint(
    tmp_path: Path, monkeypatch, fail_at: str
) -> None:
    """The save is one temp file + rename: whatever fails, `last` is the old checkpoint, whole,
    with its train state, and a later save succeeds."""
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler, global_step=1)
    ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), META, state)
    before = (tmp_path / "last.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full (simulated)")

    target = {"write": (fileio.os, "fdopen"), "fsync": (fileio.os, "fsync")}
    target["rename"] = (fileio.os, "replace")
    monkeypatch.setattr(*target[fail_at], boom)
    state.global_step = 2
    with pytest.raises(OSError, match="simulated"):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), META, state)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]
    assert (tmp_path / "last.safetensors").read_bytes() == before
    assert ckpt.load_checkpoint(tmp_path / "last").train_state.global_step == 1
    ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), META, state)
    assert ckpt.load_checkpoint(tmp_path / "last").train_state.global_step == 2


@pytest.mark.parametrize("renames_done", [1, 2])
def test_a_crash_between_renames_leaves_a_resumable_checkpoint(
    tmp_path: Path, monkeypatch, renames_done: int
) -> None:
    """Dying after the first (or second) file of a save was renamed into place must leave
    `last` loadable, old or new, with its train state: never weights and metadata of two
    different saves (which the loader refuses, so the run could not resume)."""
    model, optimizer, scheduler, scaler = make_training(seed=0)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler, global_step=1)
    ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), META, state)
    train_step(model, optimizer, scheduler, scaler)  # different weights for the second save
    real_replace, calls = fileio.os.replace, {"n": 0}

    def dies_after(src, dst):
        calls["n"] += 1
        if calls["n"] > renames_done:
            raise KeyboardInterrupt("killed (simulated)")
        real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", dies_after)
    state = ckpt.capture_train_state(optimizer, scheduler, scaler, global_step=2)
    with contextlib.suppress(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), META, state)
    monkeypatch.undo()
    loaded = ckpt.load_checkpoint(tmp_path / "last")
    assert loaded.train_state is not None and loaded.train_state.global_step in (1, 2)


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
