"""File IO at the edges: safe reading of user files and atomic writes.

Reading: `read_user_file` opens without blocking, refuses anything but a regular file (a FIFO,
a device such as /dev/zero behind a symlink, a folder) and files over a size limit, before
reading a byte; `read_json` adds strict, depth-safe JSON parsing.

Writing: a temporary file in the same folder, fsync, rename over the target, fsync of the folder;
the file gets the mode a plain `open()` would give it (0666 less the user's umask).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import math
import os
import shutil
import stat
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from glob import escape as glob_escape
from pathlib import Path
from typing import IO, Any

from dermaseg.errors import DermasegError, InputError, OutputExistsError, shown

MiB = 1 << 20
MAX_FILE_BYTES = 1024 * MiB  # photos, masks, annotation JSON, YAML, plans
MAX_MODEL_BYTES = 2048 * MiB  # ONNX protobuf's own limit
READ_CHUNK = 4 * MiB


def _open_regular(path: Path, max_bytes: int) -> tuple[int, int]:
    """An fd open for reading on a regular file of at most `max_bytes`, and its size.

    O_NONBLOCK keeps opening a FIFO from waiting for a writer; the type and size come from
    fstat of the opened file (a symlink is followed), so they cannot change between check and
    read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a directory, not a file") from None
    except PermissionError:
        raise InputError(path, "permission denied") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise InputError(path, "is a directory, not a file")
        if not stat.S_ISREG(info.st_mode):
            raise InputError(path, f"not a regular file ({_file_kind(info.st_mode)}); refused")
        if info.st_size > max_bytes:
            raise InputError(
                path, f"{info.st_size:,} bytes exceeds the limit of {max_bytes:,} for this input"
            )
    except BaseException:
        os.close(fd)
        raise
    return fd, info.st_size


def _file_kind(mode: int) -> str:
    kinds = (
        (stat.S_ISFIFO, "a named pipe"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a plain file")


def read_user_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a user's file; `InputError` naming it for anything but a readable regular
    file of at most `max_bytes` (checked before reading). An empty file is an error too."""
    path = Path(path)
    fd, size = _open_regular(path, max_bytes)
    try:
        with os.fdopen(fd, "rb", closefd=True) as handle:
            data = handle.read(size + 1)  # one byte more shows a file that grew meanwhile
            if len(data) > size:
                data += handle.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:  # grew while we read it
        raise InputError(path, f"more than {max_bytes:,} bytes; refused")
    if not data:
        raise InputError(path, "empty file (0 bytes)")
    return data


def read_head(path: str | Path, size: int) -> bytes:
    """The first `size` bytes of a regular file; b"" for anything else or on any error (for
    sniffing a format without ever blocking on a FIFO or reading a device)."""
    try:
        fd, _ = _open_regular(Path(path), max_bytes=1 << 62)
    except InputError:
        return b""
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read(size)
        except OSError:
            return b""


def user_file_sha256(path: str | Path, *, max_bytes: int = MAX_MODEL_BYTES) -> str:
    """sha256 of a user's regular file, read in chunks (works on Python 3.10, unlike
    `hashlib.file_digest`); the same refusals as `read_user_file`."""
    path = Path(path)
    fd, _ = _open_regular(path, max_bytes)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "rb", closefd=True) as handle:
            while chunk := handle.read(READ_CHUNK):
                digest.update(chunk)
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    return digest.hexdigest()


def photo_sha256(photo: bytes | str | Path) -> str:
    """The one photo hash: what a plan records as `photo.sha256`, what `compare` matches a
    photo to its plan by and what dataset splits are keyed on: sha256 of the photo file's bytes.
    Give the bytes when they are read already (to decode them), else the path (read in chunks,
    with `read_user_file`'s refusals and size limit)."""
    if isinstance(photo, bytes | bytearray | memoryview):
        return hashlib.sha256(photo).hexdigest()
    return user_file_sha256(photo, max_bytes=MAX_FILE_BYTES)


def check_regular_file(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> Path:
    """Refuse what `read_user_file` would refuse, without reading (for files that a library
    opens itself by name, such as an ONNX model given to onnxruntime)."""
    path = Path(path)
    fd, _ = _open_regular(path, max_bytes)
    os.close(fd)
    return path


def parse_json(data: bytes | str, source: str | Path) -> Any:
    """Strict JSON (no NaN/Infinity) or a one-line `InputError`; deep nesting is an error,
    never a RecursionError."""
    try:
        return json.loads(data, parse_constant=_no_constant)
    except RecursionError:
        raise InputError(source, "invalid JSON (nested too deeply)") from None
    except UnicodeDecodeError:
        raise InputError(source, "not a UTF-8 text file") from None
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        raise InputError(source, f"invalid JSON at {where}: {exc.msg}") from None
    except ValueError as exc:  # the constants refused below
        raise InputError(source, f"invalid JSON: {str(exc)[:200]}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def read_json(path: str | Path, *, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Read and parse a user's JSON file (`read_user_file` + `parse_json`)."""
    return parse_json(read_user_file(path, max_bytes=max_bytes), path)


def usable_folder(folder: Path, option: str) -> None:
    """One `DermasegError`, before any work, when `folder` cannot become a folder we can write
    in: it is a file, a part of its path is a file, or the nearest existing folder is not
    writable. Nothing is created (a run that fails to start leaves no empty folder)."""
    if folder.exists() and not folder.is_dir():
        raise DermasegError(f"{option} {shown(folder)}: is a file, not a folder")
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DermasegError(f"{option} {shown(folder)}: {shown(existing)} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DermasegError(f"{option} {shown(folder)}: {shown(existing)} is not writable")


_UMASK_LOCK = threading.Lock()
_FILE_MODE: int | None = None


def default_file_mode() -> int:
    """0666 less the process umask: the mode `open(path, "w")` gives a new file."""
    global _FILE_MODE
    if _FILE_MODE is None:
        with _UMASK_LOCK:
            umask = os.umask(0o022)
            os.umask(umask)
            _FILE_MODE = 0o666 & ~umask
    return _FILE_MODE


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


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
        if hasattr(os, "fchmod"):
            os.fchmod(fd, default_file_mode())  # mkstemp makes 0600
        text = {} if "b" in mode else {"encoding": "utf-8", "errors": "replace"}
        with os.fdopen(fd, mode, **text) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
        fsync_dir(path.parent)
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


def commit_files(files: dict[Path, bytes], *, overwrite: bool = False) -> None:
    """Write a set of files in one folder as a unit; the last one marks the set complete.

    A set is complete when its marker (the last file) exists. Without `overwrite` a complete
    set is refused (`OutputExistsError` naming the marker); the files of an incomplete one (a
    run that died half way) are replaced. Every file is first written and fsynced in a staging
    folder beside the targets, so a full disk or an encoding error leaves the folder as it was;
    then the old marker goes, each file is renamed into place and the marker comes last. If a
    rename fails, the files already moved are removed again: the set is left incomplete, never
    mixed.
    """
    targets = list(files)
    marker = targets[-1]
    folder = marker.parent
    if any(t.parent != folder for t in targets):
        raise ValueError("a committed set of files must share one folder")
    if not overwrite and marker.exists():
        raise OutputExistsError(marker)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob(f".{glob_escape(marker.name)}.*.tmp"):  # a killed run's staging
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{marker.name}.", suffix=".tmp", dir=folder))
    moved: list[Path] = []
    try:
        # written and fsynced all at once: the file system commits them together (several
        # times faster on ext4 than one fsync after another); an error is raised here
        with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
            list(pool.map(_write_synced, [staging / t.name for t in files], files.values()))
        fsync_dir(staging)
        marker.unlink(missing_ok=True)  # the set is incomplete from here until the end
        for target in targets[:-1]:
            os.replace(staging / target.name, target)
            moved.append(target)
        fsync_dir(folder)  # every other file is durable before the marker appears
        os.replace(staging / marker.name, marker)
        moved.append(marker)
        fsync_dir(folder)
    except BaseException:
        for target in moved:
            with contextlib.suppress(OSError):
                target.unlink()
        raise
    finally:
        for leftover in staging.iterdir() if staging.exists() else ():
            with contextlib.suppress(OSError):
                leftover.unlink()
        with contextlib.suppress(OSError):
            staging.rmdir()


def _write_synced(path: Path, data: bytes) -> None:
    fd = os.open(
        path,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
        default_file_mode(),
    )
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
