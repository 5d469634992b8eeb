"""dermaseg.infer: torch-free planning from photos with an exported ONNX model.

`plan_photo(photo, model=...)` makes a plan in Python without writing files (`infer/api.py`).
"""

from __future__ import annotations

__all__ = ["plan_photo"]


def __getattr__(name: str):
    if name == "plan_photo":  # imported on first use: `import dermaseg.infer.schema` stays light
        from dermaseg.infer.api import plan_photo

        return plan_photo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
