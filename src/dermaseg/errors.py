"""Errors that reach the user as one line (the CLI prints them without a traceback)."""

from __future__ import annotations

from pathlib import Path


class DermasegError(Exception):
    """An expected failure whose message is meant for the user."""


class InputError(DermasegError):
    """A specific input file is unusable; the message names the file and the problem."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


class OutputExistsError(DermasegError):
    """An output would overwrite an existing file without permission."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        super().__init__(f"{path}: already exists (use --overwrite to replace it)")
