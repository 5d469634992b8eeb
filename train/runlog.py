"""The run folder: metrics.csv, curves.png, validation overlays, optional TensorBoard events."""

from __future__ import annotations

import csv
import io
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
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        epochs = [int(r["epoch"]) for r in self.rows]
        figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
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
        plt.close(figure)
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
