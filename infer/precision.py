"""Which precision a plan runs in: fp32, or the int8 sibling where the CPU multiplies int8 fast.

int8 convolutions pay only with an int8 dot-product instruction: AVX512-VNNI or AVX-VNNI on x86
(Intel since Ice Lake / Alder Lake, AMD since Zen 4), dotprod (asimddp) on Arm. Without one,
onnxruntime's int8 kernels are no faster than fp32 and the Q/DQ nodes make the model slower.
The flags are read from /proc/cpuinfo (Linux); elsewhere they are unknown and `auto` runs fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dermaseg.errors import InputError
from dermaseg.infer.contract import int8_sibling

INT8_DOT_PRODUCT = ("avx512_vnni", "avx_vnni", "asimddp")  # x86 AVX512-VNNI, AVX-VNNI; Arm
PRECISIONS = ("auto", "fp32", "int8")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class PrecisionChoice:
    """The model file to run, its precision, and why (for `model info`, the plan and report)."""

    path: Path
    precision: str
    reason: str


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags (x86 `flags`, Arm `Features`) of the first processor; empty when
    unknown (no /proc/cpuinfo)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def cpu_model(cpuinfo: Path = CPUINFO) -> str | None:
    """The CPU's model name (x86 `model name`; None when unknown)."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("model name", "hardware", "cpu model"):
            return value.strip()
    return None


def int8_instructions(flags: frozenset[str]) -> list[str]:
    """The int8 dot-product instructions among `flags`."""
    return [flag for flag in INT8_DOT_PRODUCT if flag in flags]


def choose_precision(
    model: Path, requested: str = "auto", flags: frozenset[str] | None = None
) -> PrecisionChoice:
    """The model to run for `requested` (auto | fp32 | int8). `model` is the fp32 file (its int8
    sibling is `model.int8.onnx`) or an int8 file itself (then it runs as given)."""
    if requested not in PRECISIONS:
        raise InputError(model, f"precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    model = Path(model)
    if model.name.endswith(".int8.onnx"):
        if requested == "fp32":
            raise InputError(model, "--precision fp32 given with an int8 model file")
        return PrecisionChoice(model, "int8", "the model file given is the int8 model")
    sibling = int8_sibling(model)
    if requested == "fp32":
        return PrecisionChoice(model, "fp32", "--precision fp32")
    if requested == "int8":
        if not sibling.is_file():
            raise InputError(
                sibling,
                "--precision int8: no int8 model beside the fp32 one "
                "(export with `dermaseg export --int8`)",
            )
        return PrecisionChoice(sibling, "int8", "--precision int8")
    found = int8_instructions(cpu_flags() if flags is None else flags)
    if not found:
        return PrecisionChoice(
            model,
            "fp32",
            "auto: this CPU has no int8 dot-product instructions "
            "(AVX512-VNNI, AVX-VNNI or Arm dotprod)",
        )
    if not sibling.is_file():
        return PrecisionChoice(
            model,
            "fp32",
            f"auto: the CPU has {'+'.join(found)} but there is no int8 model ({sibling.name})",
        )
    return PrecisionChoice(
        sibling,
        "int8",
        f"auto: the CPU has {'+'.join(found)} and "
        f"{sibling.name} passed the export's accuracy guard",
    )
