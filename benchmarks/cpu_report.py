"""The CPU a benchmark ran on, printed first by every benchmark: model, cores, and the SIMD
flags that decide fp32, bf16 and int8 speed (read by `dermaseg.infer.precision`, the same
reading `plan --precision auto` makes)."""

from __future__ import annotations

import os

from dermaseg.infer.precision import cpu_flags, cpu_model, int8_instructions

SPEED_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_bf16",
    "asimd",
    "asimddp",
)


def cpu_report() -> dict:
    """The CPU model, its core count and the SIMD flags that decide fp32 and int8 speed."""
    flags = cpu_flags()
    return {
        "model": cpu_model(),
        "cores": os.cpu_count(),
        "flags": [f for f in SPEED_FLAGS if f in flags],
        "int8_dot_product": int8_instructions(flags),
    }


def cpu_line(cpu: dict | None = None) -> str:
    """One line saying which CPU it was (`cpu_report()` when not given)."""
    cpu = cpu_report() if cpu is None else cpu
    dot = "+".join(cpu["int8_dot_product"]) or "none (int8 will not pay)"
    return (
        f"CPU: {cpu['model']} ({cpu['cores']} cores); flags {' '.join(cpu['flags'])}; "
        f"int8 dot product: {dot}"
    )
