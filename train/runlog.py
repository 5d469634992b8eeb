"""The run folder: metrics.csv, curves.png, validation overlays, optional TensorBoard events;
where each epoch's wall time went; and the background thread that writes files meanwhile."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dermaseg.datasets.images import encode_png
from dermaseg.fileio import write_bytes, write_text


def new_run_dir(runs_dir: Path, name: str) -> Path:
    """`runs/<name>`, or `runs/<name>-2`, `-3`... if taken: a new run never reuses a folder."""
    candidate, index = runs_dir / name, 1
    while candidate.exists():
        index += 1
        candidate = runs_dir / f"{name}-{index}"
    candidate.mkdir(parents=True)
    return candidate


class RunLog:
    """Appends one row of metrics per epoch and redraws the curves; rank 0 only."""

    def __init__(self, run_dir: Path, use_tensorboard: bool = True) -> None:
        self.run_dir = run_dir
        self.csv_path = run_dir / "metrics.csv"
        self.rows: list[dict] = self._read_rows()
        self.tensorboard = _tensorboard_writer(run_dir) if use_tensorboard else None

    def _read_rows(self) -> list[dict]:
        if not self.csv_path.exists():
            return []
        with self.csv_path.open(newline="") as handle:
            return [dict(row) for row in csv.DictReader(handle)]

    def truncate(self, last_epoch: int) -> None:
        """Forget rows after `last_epoch` (epochs that were redone after a resume)."""
        self.rows = [r for r in self.rows if int(r["epoch"]) <= last_epoch]

    def log(self, row: dict) -> None:
        """Record an epoch's metrics: rewrite metrics.csv atomically and redraw curves.png."""
        self.rows.append({k: _plain(v) for k, v in row.items()})
        fields = list(dict.fromkeys(k for r in self.rows for k in r))
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields)
        writer.writeheader()
        writer.writerows(self.rows)
        write_text(self.csv_path, buffer.getvalue())
        self._draw_curves()
        if self.tensorboard is not None:
            for key, value in row.items():
                if isinstance(value, int | float) and key != "epoch":
                    self.tensorboard.add_scalar(key, value, int(row["epoch"]))
            self.tensorboard.flush()

    def _draw_curves(self) -> None:
        from matplotlib.figure import Figure  # no pyplot: no global state, safe off the main thread

        epochs = [int(r["epoch"]) for r in self.rows]
        figure = Figure(figsize=(10, 4))
        left, right = figure.subplots(1, 2)
        for key in ("train_loss", "val_loss"):
            _plot(left, epochs, self.rows, key)
        left.set_title("loss")
        for key in [k for k in self.rows[-1] if k.startswith("dice_") or k == "val_mean_dice"]:
            _plot(right, epochs, self.rows, key)
        right.set_title("validation Dice")
        right.set_ylim(0, 1)
        for axis in (left, right):
            axis.set_xlabel("epoch")
            axis.legend(fontsize=7)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        write_bytes(self.run_dir / "curves.png", buffer.getvalue())

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _plot(axis, epochs: list[int], rows: list[dict], key: str) -> None:
    values = [float(r[key]) if r.get(key) not in (None, "", "nan") else np.nan for r in rows]
    if not all(np.isnan(values)):
        axis.plot(epochs, values, label=key, marker=".")


def _plain(value: object) -> object:
    return round(float(value), 6) if isinstance(value, float | np.floating) else value


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def overlay_grid(
    images: list[np.ndarray],
    truths: list[np.ndarray],
    predictions: list[np.ndarray],
    palette: np.ndarray,
) -> np.ndarray:
    """Rows of [photo | truth overlay | prediction overlay] for visual checks."""
    rows = []
    for image, truth, prediction in zip(images, truths, predictions, strict=True):
        panels = [image]
        for labels in (truth, prediction):
            colours = palette[np.clip(labels, 0, len(palette) - 1)]
            labelled = (labels > 0) & (labels < len(palette))
            blended = image.copy()
            blended[labelled] = (0.45 * image[labelled] + 0.55 * colours[labelled]).astype(np.uint8)
            panels.append(blended)
        rows.append(np.concatenate(panels, axis=1))
    return np.concatenate(rows, axis=0)


def save_overlays(path: Path, grid: np.ndarray) -> None:
    write_bytes(path, encode_png(grid))


TIMED_PARTS = ("step", "data_wait", "val", "checkpoint")


class EpochClock:
    """Where the wall time of each epoch goes: training steps (forward, backward, optimiser),
    waiting for the next batch, validation, checkpointing, and the rest (`other`: logging,
    progress, the loop itself). Laps are back to back, so the parts of all epochs add up to the
    wall time of the loop."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync  # e.g. torch.cuda.synchronize: queued device work counts where it ran
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(TIMED_PARTS, 0.0)

    @contextmanager
    def timing(self, part: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[part] += time.perf_counter() - started

    def timed(self, items: Iterable, part: str) -> Iterator:
        """Yield from `items`, adding the time spent waiting for each to `part`."""
        iterator = iter(items)
        while True:
            with self.timing(part):
                item = next(iterator, _END)
            if item is _END:
                return
            yield item

    def synced(self, part: str) -> None:
        """Wait for the device's queued work and count the wait as `part`."""
        if self.sync is not None:
            with self.timing(part):
                self.sync()

    def lap(self) -> dict[str, float]:
        """This epoch's seconds per part, `other` and the total; starts the next epoch."""
        now = time.perf_counter()
        total = now - self.started
        row = {f"{part}_seconds": seconds for part, seconds in self.seconds.items()}
        row["other_seconds"] = max(0.0, total - sum(self.seconds.values()))
        row["seconds"] = total
        self.started, self.seconds = now, dict.fromkeys(TIMED_PARTS, 0.0)
        return row


_END = object()


class Background:
    """Runs file writes (checkpoints, metrics, curves, overlays) one at a time, in the order
    given, on one thread, while training goes on. A job's error is raised in the training
    thread at the next `submit` or `wait`."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dermaseg-writer")
        self._queued: list[Future] = []

    def submit(self, job: Callable, *args) -> Future:
        while self._queued and self._queued[0].done():
            self._queued.pop(0).result()
        self._queued.append(self._pool.submit(job, *args))
        return self._queued[-1]

    def wait(self) -> None:
        """Wait for every queued job; raise the first error."""
        while self._queued:
            self._queued.pop(0).result()

    def __enter__(self) -> Background:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        try:
            if error is None:
                self.wait()
            else:  # finish what was queued (valid checkpoints), keep the original error
                for future in self._queued:
                    future.exception()
        finally:
            self._pool.shutdown(wait=True)
