"""Process-group setup for `torchrun` (DDP) and device, precision and seeding choices."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from dermaseg.train.config import TrainConfig


@dataclass(frozen=True)
class Runtime:
    """Where this process runs: its rank among `world_size` processes and its device."""

    rank: int
    world_size: int
    device: torch.device
    amp_dtype: torch.dtype | None
    channels_last: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _device(choice: str, local_rank: int) -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from dermaseg.errors import DermasegError

            raise DermasegError("train.device=cuda but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            flags = next((line for line in handle if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision: bf16 on CUDA (fp16 where bf16 is missing) and on CPUs with native bf16
    (2-4x faster training steps there); `off` for full fp32."""
    if choice == "off":
        return None
    if device.type != "cuda":
        if choice == "bf16" or (choice == "auto" and cpu_has_native_bf16()):
            return torch.bfloat16
        return None
    if choice == "fp16" or (choice == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def setup(config: TrainConfig) -> Runtime:
    """Join the process group when started by torchrun (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(config.device, local_rank)
    if device.type == "cuda":  # fixed input sizes: let cuDNN pick its fastest kernels once
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    # channels_last suits cuDNN and oneDNN alike (about 2x faster training steps on the CPU)
    channels_last = True if config.channels_last == "auto" else config.channels_last
    return Runtime(rank, world_size, device, amp_dtype(config.amp, device), channels_last)


def teardown(runtime: Runtime) -> None:
    if runtime.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def any_rank(flag: bool, runtime: Runtime) -> bool:
    """True on every rank if `flag` is true on any rank (a stop request, say)."""
    if not runtime.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=runtime.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def any_rank_flags(flags: tuple[bool, ...], runtime: Runtime) -> tuple[bool, ...]:
    """`any_rank` of several flags in one collective."""
    if not runtime.distributed:
        return flags
    values = torch.tensor([1.0 if f else 0.0 for f in flags], device=runtime.device)
    dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return tuple(bool(v) for v in (values > 0).tolist())


def from_main(value: int, runtime: Runtime) -> int:
    """Rank 0's `value` on every rank (plans that every rank must follow alike)."""
    if not runtime.distributed:
        return value
    tensor = torch.tensor([value], dtype=torch.int64, device=runtime.device)
    dist.broadcast(tensor, src=0)
    return int(tensor.item())


def barrier(runtime: Runtime) -> None:
    if runtime.distributed:
        dist.barrier()
