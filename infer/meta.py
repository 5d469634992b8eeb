"""Who and what a plan is about: patient, visit, body site, clinician, notes.

Given on the command line (`--meta KEY=VALUE`, for every photo), in a CSV (`--meta-csv`, one row
per photo, a `photo` column naming the file), or edited in the review desk. Values are plain
text, kept short; reports escape them.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Callable, Mapping
from pathlib import Path

from dermaseg.errors import DermasegError, InputError
from dermaseg.fileio import read_user_file

META_KEYS = ("patient", "visit", "body_site", "clinician", "notes")
META_LABELS = {
    "patient": "Patient",
    "visit": "Visit",
    "body_site": "Body site",
    "clinician": "Clinician",
    "notes": "Notes",
}
MAX_VALUE_CHARS = 2000


def check_meta(values: Mapping[str, object], where: str) -> dict[str, str]:
    """Known keys with text values (whitespace trimmed, empty dropped); raises naming the key."""
    checked: dict[str, str] = {}
    for key, value in values.items():
        name = str(key).strip().lower().replace("-", "_").replace(" ", "_")
        if name not in META_KEYS:
            close = difflib.get_close_matches(name, META_KEYS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (use {', '.join(META_KEYS)})"
            raise DermasegError(f"{where}: unknown field {key!r}{hint}")
        text = "" if value is None else str(value).strip()
        if len(text) > MAX_VALUE_CHARS:
            raise DermasegError(f"{where}: {name} is longer than {MAX_VALUE_CHARS} characters")
        if text:
            checked[name] = text
    return checked


def parse_meta_options(items: list[str]) -> dict[str, str]:
    """`--meta KEY=VALUE` items as one mapping."""
    values = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DermasegError(f"--meta {item!r}: expected KEY=VALUE, e.g. body_site=left forearm")
        values[key] = value
    return check_meta(values, "--meta")


def read_meta_csv(path: Path) -> dict[str, dict[str, str]]:
    """Photo file name -> its fields, from a CSV with a `photo` column and field columns."""
    data = read_user_file(path)  # a regular file under the size limit (a FIFO would hang)
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read as a UTF-8 CSV ({exc})") from None
    table: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, start=2):
        photo = (row.pop("photo", None) or "").strip()
        if not photo:
            raise InputError(path, f"line {number}: no photo (the CSV needs a `photo` column)")
        table[Path(photo).name] = check_meta(
            {k: v for k, v in row.items() if k is not None}, f"{path} line {number}"
        )
    return table


def meta_source(
    options: dict[str, str], csv_path: Path | None
) -> Callable[[Path], dict[str, str]] | None:
    """The fields for each photo: the CSV row of its file name over the `--meta` values."""
    table = read_meta_csv(csv_path) if csv_path is not None else {}
    if not options and not table:
        return None
    return lambda photo: {**options, **table.get(photo.name, {})}
