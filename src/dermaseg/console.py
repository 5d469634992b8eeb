"""Shared terminal output: a stderr console for messages and progress, stdout kept for --json."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from dermaseg.errors import one_line
from dermaseg.fileio import json_text

err_console = Console(stderr=True, soft_wrap=True, highlight=False)
out_console = Console(soft_wrap=True, highlight=False)  # results a person reads (tables)


def print_json(payload: Any) -> None:
    """Machine-readable output on stdout, nothing else mixed in."""
    sys.stdout.write(json_text(payload))
    sys.stdout.flush()


def error_line(message: str) -> None:
    """`error: message` on stderr, on one line whatever the message holds."""
    err_console.print(f"[bold red]error:[/] {escape(one_line(message))}", highlight=False)


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Any]:
    """A progress bar on stderr (hidden when stderr is not a terminal); yields advance(n)."""
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,
    )
    with progress:
        task = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(task, n)
