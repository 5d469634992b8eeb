"""Errors that reach the user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

import unicodedata
from pathlib import Path


def shown(name: str | Path) -> str:
    """A file name as it may appear in a one-line message: unchanged when every character is
    printable, else quoted like Python's repr (so a newline in a name cannot forge a line).
    Undecodable bytes of a name (lone surrogates) are shown as \\xNN escapes."""
    text = str(name)
    if all(_printable(ch) for ch in text):
        return text
    return repr(text).replace("\\udc", "\\x")  # surrogateescape'd byte 0xNN -> \\xNN


def _printable(ch: str) -> bool:
    return ch == " " or unicodedata.category(ch)[0] not in "CZ"


def one_line(text: str) -> str:
    """`text` with every control character escaped (for messages built from untrusted text)."""
    if all(_printable(ch) or ch == "\t" for ch in text):
        return text
    return "".join(ch if _printable(ch) else repr(ch)[1:-1] for ch in text)


class DermasegError(Exception):
    """An expected failure whose message is meant for the user."""


class InputError(DermasegError):
    """A specific input file is unusable; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{shown(path)}: {problem}")


class OutputExistsError(DermasegError):
    """An output would overwrite an existing file without permission."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{shown(path)}: already exists (use --overwrite to replace it)")
