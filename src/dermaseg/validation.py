"""Turn pydantic validation errors into one readable line, suggesting the closest valid key."""

from __future__ import annotations

import difflib
import math
import types
import typing

import typer
from pydantic import BaseModel, ValidationError

# Bounds of the clinic commands' numeric options, checked once before any photo (and shown in
# --help by typer): one definition for `plan` and `score`.
MM_PER_PIXEL = (1e-4, 10.0)  # 0.1 um/px (dermoscope) .. 10 mm/px (whole body from afar)
MARKER_MM = (1.0, 1000.0)
MAX_THREADS = 256  # also data check's reader threads
WORKING_SIZE = (64, 2048)  # the longer side a network sees: training recipes and export


def finite(value: float | None) -> float | None:
    """A typer option callback: NaN and infinities are refused (click ranges let NaN
    through, since every comparison with it is false)."""
    if value is not None and not math.isfinite(value):
        raise typer.BadParameter(f"{value} is not a finite number")
    return value


def mm_per_pixel_option():
    """`--mm-per-pixel`, bounded as every command that takes a scale bounds it."""
    return typer.Option(
        None,
        "--mm-per-pixel",
        min=MM_PER_PIXEL[0],
        max=MM_PER_PIXEL[1],
        callback=finite,
        help="Scale, when known (skips marker detection).",
    )


def marker_mm_option():
    """`--marker-mm`: the ArUco marker's side length."""
    return typer.Option(
        20.0,
        "--marker-mm",
        min=MARKER_MM[0],
        max=MARKER_MM[1],
        callback=finite,
        help="Marker side length in mm.",
    )


def working_size_text() -> str:
    return f"a multiple of 32 from {WORKING_SIZE[0]} to {WORKING_SIZE[1]}"


def threads_option():
    """`--threads`: onnxruntime's intra-op threads."""
    return typer.Option(0, "--threads", min=0, max=MAX_THREADS, help="CPU threads (0: all cores).")


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as `Model`, `Model | None`, `list[Model]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, list, tuple, dict):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _fields_at(model: type[BaseModel], location: tuple) -> list[str]:
    """The valid field names of the (sub)model that holds the key at `location`."""
    current: type[BaseModel] | None = model
    for part in location[:-1]:
        if current is None:
            return []
        if isinstance(part, str) and part in current.model_fields:
            current = _model_in(current.model_fields[part].annotation)
    return list(current.model_fields) if current is not None else []


def validation_message(exc: ValidationError, model: type[BaseModel]) -> str:
    """`key.path: message` for each error, joined with '; '; unknown keys get a suggestion."""
    parts = []
    for err in exc.errors():
        location = tuple(err["loc"])
        where = ".".join(str(p) for p in location) or "(top level)"
        message = err["msg"]
        if err["type"] == "extra_forbidden" and location and isinstance(location[-1], str):
            valid = _fields_at(model, location)
            close = difflib.get_close_matches(location[-1], valid, n=1, cutoff=0.5)
            message = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
            if valid and not close:
                message += f" (valid keys: {', '.join(valid)})"
        parts.append(f"{where}: {message}")
    return "; ".join(parts)
