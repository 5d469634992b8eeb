"""Safe YAML reading for configs: a mapping or a one-line error naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from dermaseg.errors import InputError
from dermaseg.fileio import read_user_file


def parse_mapping(text: str, source: str | Path) -> dict:
    """Parse YAML text that must be a mapping (empty text gives {}); never constructs objects."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise InputError(source, f"invalid YAML{where}") from None
    except RecursionError:
        raise InputError(source, "invalid YAML (nested too deeply)") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(source, f"expected a mapping of settings, got {type(data).__name__}")
    return data


MAX_YAML_BYTES = 16 << 20  # a config, not a data file


def read_mapping(path: Path) -> dict:
    """Read and parse a YAML file that must hold a mapping (a regular file; an empty one is {})."""
    try:
        data = read_user_file(path, max_bytes=MAX_YAML_BYTES)
    except InputError as exc:
        if exc.problem != "empty file (0 bytes)":
            raise
        data = b""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(path, "not a UTF-8 text file") from None
    return parse_mapping(text, path)
