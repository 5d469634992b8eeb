"""Atomic file writes: a temporary file in the same folder, fsync, then rename over the target."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from dermaseg.errors import OutputExistsError


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", *, overwrite: bool = True) -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; on success it replaces `path` atomically.

    On any exception the temporary file is removed and `path` is left as it was. Text is UTF-8;
    what UTF-8 cannot encode (lone surrogates from undecodable file names) becomes '?'.
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise OutputExistsError(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        text = {} if "b" in mode else {"encoding": "utf-8", "errors": "replace"}
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def write_bytes(path: str | Path, data: bytes, *, overwrite: bool = True) -> None:
    with atomic_open(path, "wb", overwrite=overwrite) as handle:
        handle.write(data)


def write_text(path: str | Path, text: str, *, overwrite: bool = True) -> None:
    with atomic_open(path, "w", overwrite=overwrite) as handle:
        handle.write(text)


def unicode_safe(text: str) -> str:
    """`text` as valid Unicode: the undecodable bytes of a file name (kept by Python as lone
    surrogates, which no UTF-8 encoder accepts) become U+FFFD."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def json_safe(obj: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None and lone surrogates by U+FFFD,
    recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, str):
        return unicode_safe(obj)
    if isinstance(obj, dict):
        return {
            unicode_safe(key) if isinstance(key, str) else key: json_safe(value)
            for key, value in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [json_safe(value) for value in obj]
    return obj


def json_text(obj: Any) -> str:
    """Strict JSON (NaN becomes null), indented, UTF-8 characters kept."""
    return json.dumps(json_safe(obj), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: str | Path, obj: Any, *, overwrite: bool = True) -> None:
    write_text(path, json_text(obj), overwrite=overwrite)
