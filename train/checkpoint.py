"""Checkpoints as one safetensors file: no pickle is written or read, ever.

A checkpoint with stem `run/best` is one file, `best.safetensors`, committed by one atomic
rename (then an fsync of its folder), so a crash at any moment leaves either the previous
checkpoint or the new one, never a mix:

- its tensors are the model weights (CPU, contiguous, no shared storage) and, when a TrainState
  is saved, the TrainState's tensors (optimizer moments, `step` counters, torch RNG states)
  under `__train_state__.<path>`, e.g. `__train_state__.optimizer.state.0.exp_avg`;
- its header metadata (safetensors' string map) holds `format`, `format_version`, the sha256
  of the tensor data, and `dermaseg.checkpoint`: JSON `{"meta", "train_state"}`. `meta` is the
  caller's dict; `train_state` is the JSON part of the TrainState, where each tensor is
  `{"__tensor__": key}`, each tuple `{"__tuple__": [...]}` and each int-keyed dict
  `{"__int_keys__": {...}}`.

safetensors' own `load_file("best.safetensors")` gives the weights (plus, for `last`, the
`__train_state__.*` tensors). Checkpoints of format version 1 (weights, `.state.safetensors`
and a `.json` sidecar beside them) are still read.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import Tensor

from dermaseg.errors import InputError
from dermaseg.fileio import atomic_open, json_text, parse_json, read_json, read_user_file

FORMAT = "dermaseg-checkpoint"
FORMAT_VERSION = 2
KEY_FORMAT, KEY_VERSION, KEY_SHA, KEY_CONTENT = (
    "format",
    "format_version",
    "tensors_sha256",
    "dermaseg.checkpoint",
)
STATE_PREFIX = "__train_state__."
MAX_CHECKPOINT_BYTES = 64 << 30
WEIGHTS_SUFFIX = ".safetensors"
STATE_SUFFIX = ".state.safetensors"
SIDECAR_SUFFIX = ".json"
NOT_SAFETENSORS = (
    "not a safetensors file; dermaseg checkpoints are safetensors + JSON (pickle files are refused)"
)
MISMATCH = "checkpoint files do not match (interrupted write?)"
DAMAGED = "damaged checkpoint: its tensor data does not match the sha256 in its header"


@dataclass
class RngState:
    """The global random generators: torch CPU and CUDA (tensors), numpy and python (JSON)."""

    torch_cpu: Tensor
    torch_cuda: list[Tensor]
    numpy: list[Any]
    python: list[Any]


@dataclass
class TrainState:
    """Everything besides the weights that a resumed run needs to continue bit-identically."""

    optimizer: dict[str, Any]
    rng: RngState
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0
    best_metric: float | None = None
    epochs_without_improvement: int = 0
    ema: dict[str, Any] | None = None  # the averaged weights when train.ema is on


@dataclass
class LoadedCheckpoint:
    """What `load_checkpoint` returns; `train_state` is None for weights-only checkpoints."""

    model_state: dict[str, Tensor]
    meta: dict[str, Any]
    train_state: TrainState | None


def capture_rng_state() -> RngState:
    """Snapshot torch (CPU and every CUDA device), numpy and python global RNGs."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    name, key, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return RngState(
        torch_cpu=torch.get_rng_state(),
        torch_cuda=list(cuda),
        numpy=[name, key.tolist(), pos, has_gauss, cached],
        python=[version, list(internal), gauss_next],
    )


def restore_rng_state(state: RngState) -> None:
    """Put the global RNGs back; CUDA states beyond this machine's devices are ignored."""
    torch.set_rng_state(state.torch_cpu)
    if torch.cuda.is_available():
        for device, cuda_state in enumerate(state.torch_cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, device)
    name, key, pos, has_gauss, cached = state.numpy
    np.random.set_state((name, np.asarray(key, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = state.python
    random.setstate((version, tuple(internal), gauss_next))


def capture_train_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    scaler: torch.amp.GradScaler | None = None,
    **counters: Any,
) -> TrainState:
    """A TrainState of these objects and the global RNGs; `counters` are TrainState's ints."""
    return TrainState(
        optimizer=optimizer.state_dict(),
        rng=capture_rng_state(),
        scheduler=None if scheduler is None else scheduler.state_dict(),
        scaler=None if scaler is None else scaler.state_dict(),
        **counters,
    )


def restore_train_state(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler | None,
    state: TrainState,
) -> None:
    """Load optimizer, scheduler and scaler state, then the global RNGs."""
    optimizer.load_state_dict(state.optimizer)
    if scheduler is not None and state.scheduler is not None:
        scheduler.load_state_dict(state.scheduler)
    if scaler is not None and state.scaler:
        scaler.load_state_dict(state.scaler)
    restore_rng_state(state.rng)


@dataclass
class Snapshot:
    """A checkpoint's content copied off the live training state: CPU tensors with storage of
    their own and the header's JSON content. Writing it can go on while training changes the
    model and optimiser (`write_snapshot` from a background thread)."""

    tensors: dict[str, Tensor]
    content: dict[str, Any]


def copy_state(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """CPU copies of a state dict's tensors, each with storage of its own (one sync on a GPU)."""
    copies = {key: _cpu_copy(t) for key, t in state.items()}
    _wait_for_copies()
    return copies


def snapshot(
    model_state: dict[str, Tensor],
    meta: dict[str, Any],
    train_state: TrainState | None = None,
    *,
    copied: bool = False,
) -> Snapshot:
    """Copy the weights (unless `copied`: already a `copy_state`) and the training state."""
    tensors = dict(model_state) if copied else copy_state(model_state)
    if any(key.startswith(STATE_PREFIX) for key in tensors):
        raise ValueError(f"model state keys may not start with {STATE_PREFIX!r}")
    content: dict[str, Any] = {"meta": meta}
    if train_state is not None:
        state_tensors: dict[str, Tensor] = {}
        content["train_state"] = _encode(_train_state_dict(train_state), "", state_tensors)
        tensors.update({STATE_PREFIX + key: t for key, t in state_tensors.items()})
        _wait_for_copies()
    return Snapshot(tensors, content)


def write_snapshot(path_stem: Path, snap: Snapshot) -> None:
    """Write `<stem>.safetensors` (weights, train state, metadata) in one atomic step."""
    stem = Path(path_stem)
    data = save_safetensors(snap.tensors)
    size = int.from_bytes(data[:8], "little")
    header, payload = json.loads(data[8 : 8 + size]), memoryview(data)[8 + size :]
    # the tensor data does not depend on the header, so its digest can go into the header
    header["__metadata__"] = {
        KEY_FORMAT: FORMAT,
        KEY_VERSION: str(FORMAT_VERSION),
        KEY_CONTENT: json_text(snap.content),
        KEY_SHA: _sha256(payload),
    }
    # the same file safetensors writes with this metadata, without serialising the tensors again
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors pads its header to 8 bytes
    with atomic_open(_with(stem, WEIGHTS_SUFFIX), "wb") as handle:
        handle.write(len(text).to_bytes(8, "little"))
        handle.write(text)
        handle.write(payload)
    for legacy in (SIDECAR_SUFFIX, STATE_SUFFIX):  # a version-1 checkpoint under this stem
        _with(stem, legacy).unlink(missing_ok=True)


def save_checkpoint(
    path_stem: Path,
    model_state: dict[str, Tensor],
    meta: dict[str, Any],
    train_state: TrainState | None = None,
) -> None:
    """Write `<stem>.safetensors` (weights, train state, metadata) in one atomic step."""
    write_snapshot(path_stem, snapshot(model_state, meta, train_state))


def load_checkpoint(path_stem_or_file: Path) -> LoadedCheckpoint:
    """Read a checkpoint given its stem, `.safetensors` or `.json`; InputError if unusable."""
    stem = _stem_of(Path(path_stem_or_file))
    weights_path = _with(stem, WEIGHTS_SUFFIX)
    data = _read_safetensors_bytes(weights_path)
    header, payload = _split(data, weights_path)
    metadata = header.get("__metadata__") or {}
    if metadata.get(KEY_FORMAT) != FORMAT:
        return _load_version_1(stem, data)
    if not str(metadata.get(KEY_VERSION, "")).isdigit():
        raise InputError(weights_path, "invalid checkpoint format version")
    if int(metadata[KEY_VERSION]) > FORMAT_VERSION:
        raise InputError(weights_path, "written by a newer dermaseg; upgrade to read it")
    if _sha256(payload) != metadata.get(KEY_SHA):
        raise InputError(weights_path, DAMAGED)
    content = parse_json(str(metadata.get(KEY_CONTENT, "")), weights_path)
    if not isinstance(content, dict) or "meta" not in content:
        raise InputError(weights_path, f"no checkpoint content in its header ({KEY_CONTENT})")
    tensors = _parse_safetensors(weights_path, data)
    model_state = {k: t for k, t in tensors.items() if not k.startswith(STATE_PREFIX)}
    train_state = None
    if "train_state" in content:
        state = {
            k[len(STATE_PREFIX) :]: t for k, t in tensors.items() if k.startswith(STATE_PREFIX)
        }
        train_state = _train_state_from(weights_path, content["train_state"], state)
    return LoadedCheckpoint(model_state=model_state, meta=content["meta"], train_state=train_state)


def checkpoint_exists(path_stem: Path) -> bool:
    return _with(Path(path_stem), WEIGHTS_SUFFIX).is_file()


def _load_version_1(stem: Path, weights: bytes) -> LoadedCheckpoint:
    """A checkpoint of format version 1: weights, `.state.safetensors`, `.json` sidecar."""
    weights_path = _with(stem, WEIGHTS_SUFFIX)
    sidecar = _read_sidecar(_with(stem, SIDECAR_SUFFIX))
    if _sha256(weights) != sidecar["sha256"].get("weights"):
        raise InputError(weights_path, MISMATCH)
    model_state = _parse_safetensors(weights_path, weights)
    train_state = None
    if "train_state" in sidecar:
        state_path = _with(stem, STATE_SUFFIX)
        data = _read_safetensors_bytes(state_path)
        if _sha256(data) != sidecar["sha256"].get("train_state"):
            raise InputError(state_path, MISMATCH)
        tensors = _parse_safetensors(state_path, data)
        train_state = _train_state_from(state_path, sidecar["train_state"], tensors)
    return LoadedCheckpoint(model_state=model_state, meta=sidecar["meta"], train_state=train_state)


def _with(stem: Path, suffix: str) -> Path:
    return stem.with_name(stem.name + suffix)


def _stem_of(path: Path) -> Path:
    """The checkpoint stem of a stem, weights, state or sidecar path."""
    for suffix in (STATE_SUFFIX, WEIGHTS_SUFFIX, SIDECAR_SUFFIX):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)])
    if path.exists():
        head = read_user_file(path, max_bytes=MAX_CHECKPOINT_BYTES)[:9]
        ok = _looks_like_safetensors(head)
        raise InputError(path, "expected a .safetensors or .json file" if ok else NOT_SAFETENSORS)
    return path


def _cpu_copy(tensor: Tensor) -> Tensor:
    """A contiguous CPU copy with its own storage (safetensors refuses shared storage); from a
    GPU without waiting (`_wait_for_copies` syncs once after all copies)."""
    return tensor.detach().to(
        "cpu", memory_format=torch.contiguous_format, copy=True, non_blocking=tensor.is_cuda
    )


def _wait_for_copies() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()  # the non-blocking device-to-host copies have landed


def _sha256(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def _looks_like_safetensors(data: bytes) -> bool:
    """An 8-byte little-endian header length followed by a JSON object."""
    return len(data) > 8 and data[8:9] == b"{"


def _read_safetensors_bytes(path: Path) -> bytes:
    if not path.exists() and not path.is_symlink():
        raise InputError(path, "missing (a checkpoint is <stem>.safetensors)")
    data = read_user_file(path, max_bytes=MAX_CHECKPOINT_BYTES)
    if not _looks_like_safetensors(data):
        raise InputError(path, NOT_SAFETENSORS)
    return data


def _split(data: bytes, path: Path | None = None) -> tuple[dict[str, Any], bytes]:
    """A safetensors file's parsed JSON header and its tensor data."""
    size = int.from_bytes(data[:8], "little")
    if not 0 < size <= len(data) - 8:
        raise InputError(path or "checkpoint", "not a valid safetensors file (header size)")
    header = parse_json(data[8 : 8 + size], path or "checkpoint")
    if not isinstance(header, dict):
        raise InputError(path or "checkpoint", "not a valid safetensors file (header)")
    return header, data[8 + size :]


def _parse_safetensors(path: Path, data: bytes) -> dict[str, Tensor]:
    try:
        return load_safetensors(data)
    except SafetensorError as exc:
        raise InputError(path, f"not a valid safetensors file ({exc})") from None


def _read_sidecar(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(path, "missing (a version-1 checkpoint is <stem>.safetensors + .json)")
    sidecar = read_json(path)
    usable = isinstance(sidecar, dict) and isinstance(sidecar.get("sha256"), dict)
    if not usable or sidecar.get("format") != FORMAT or "meta" not in sidecar:
        raise InputError(path, f"not a dermaseg checkpoint sidecar (no format: {FORMAT!r})")
    if sidecar.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(path, "written by a newer dermaseg; upgrade to read it")
    return sidecar


def _train_state_dict(state: TrainState) -> dict[str, Any]:
    """The TrainState as a plain dict (no deep copy, unlike dataclasses.asdict)."""
    plain = {f.name: getattr(state, f.name) for f in fields(state)}
    plain["rng"] = {f.name: getattr(state.rng, f.name) for f in fields(state.rng)}
    return plain


def _train_state_from(path: Path, encoded: Any, tensors: dict[str, Tensor]) -> TrainState:
    """Rebuild the TrainState from its JSON part and its tensors."""
    try:
        plain = _decode(encoded, tensors)
        return TrainState(**{**plain, "rng": RngState(**plain["rng"])})
    except RecursionError:
        raise InputError(path, "train state nested too deeply") from None
    except (KeyError, TypeError) as exc:
        raise InputError(path, f"train state does not match this dermaseg ({exc})") from None


def _encode(obj: Any, key: str, tensors: dict[str, Tensor]) -> Any:
    """JSON-able form of `obj`; its tensors go into `tensors` under their dotted path."""
    if isinstance(obj, Tensor):
        if key in tensors:
            raise ValueError(f"two tensors in the train state share the key {key!r}")
        tensors[key] = _cpu_copy(obj)
        return {"__tensor__": key}
    if isinstance(obj, tuple):
        return {"__tuple__": _encode(list(obj), key, tensors)}
    if isinstance(obj, list):
        return [_encode(v, _join(key, i), tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        encoded = {str(k): _encode(v, _join(key, k), tensors) for k, v in obj.items()}
        has_int_keys = bool(obj) and all(isinstance(k, int) for k in obj)
        return {"__int_keys__": encoded} if has_int_keys else encoded
    return obj


def _join(key: str, part: object) -> str:
    return f"{key}.{part}" if key else str(part)


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    """Inverse of `_encode`."""
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__int_keys__" in obj:
        return {int(k): _decode(v, tensors) for k, v in obj["__int_keys__"].items()}
    return {k: _decode(v, tensors) for k, v in obj.items()}
