"""Checks for optional extras, so train-only commands fail with one line naming the extra."""

from __future__ import annotations

from importlib.util import find_spec

from dermaseg.errors import DermasegError

TRAIN_MODULES = ("torch", "segmentation_models_pytorch", "albumentations", "safetensors")


def require_train_extra(command: str) -> None:
    """Raise a one-line error if the [train] extra is not installed."""
    missing = [name for name in TRAIN_MODULES if find_spec(name) is None]
    if missing:
        raise DermasegError(
            f"`dermaseg {command}` needs the [train] extra (missing {', '.join(missing)}): "
            "pip install 'dermaseg[train]'"
        )
