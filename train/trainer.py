"""The training loop: one readable function from config to checkpoints, single process or DDP.

Checkpoints go to `<run>/weights/{last,best}.*` after every epoch (and on Ctrl-C), so a run
killed at any moment resumes with `--resume <run>` losing at most the epoch in progress.
"""

from __future__ import annotations

import math
import signal
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dermaseg import __version__
from dermaseg.console import err_console
from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.splits import SPLIT_NAMES, SplitAssignment, read_split_file
from dermaseg.datasets.taxonomy import Taxonomy
from dermaseg.errors import DermasegError
from dermaseg.fileio import write_json, write_text
from dermaseg.train import distributed
from dermaseg.train.augment import eval_pipeline, train_pipeline
from dermaseg.train.checkpoint import (
    capture_train_state,
    checkpoint_exists,
    load_checkpoint,
    restore_train_state,
    save_checkpoint,
)
from dermaseg.train.config import RunConfig, dump_config
from dermaseg.train.data import ResumableSampler, SegmentationData, load_photos, seed_worker
from dermaseg.train.evaluate import evaluate
from dermaseg.train.finetune import init_from_checkpoint
from dermaseg.train.losses import build_loss
from dermaseg.train.model import build_model, normalisation, set_encoder_trainable
from dermaseg.train.runlog import RunLog, new_run_dir, overlay_grid, save_overlays

CHECKPOINT_FORMAT = "dermaseg-checkpoint/1"


@dataclass
class Counters:
    """Where training stands; saved with every checkpoint that can be resumed."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # optimiser steps done in the epoch in progress
    global_step: int = 0
    best_metric: float | None = None
    epochs_without_improvement: int = 0


@dataclass
class TrainResult:
    run_dir: Path
    epochs_done: int
    best_metric: float | None
    best_metrics: dict | None
    interrupted: bool


def lr_factor(step: int, total: int, warmup: int, schedule: str, power: float) -> float:
    """Linear warm-up to 1, then cosine or poly decay towards 0 (or constant)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "poly":
        return (1 - progress) ** power
    return 1.0


@contextmanager
def stop_on_sigint():
    """Turn Ctrl-C into a flag checked between steps, so the loop can save and exit cleanly."""
    requested = {"stop": False}

    def handler(signum, frame) -> None:
        requested["stop"] = True
        err_console.print("[yellow]Interrupted: saving a checkpoint, then stopping...[/]")

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield requested
    finally:
        signal.signal(signal.SIGINT, previous)


def checkpoint_meta(
    config: RunConfig, taxonomy: Taxonomy, epoch: int, metrics: dict | None, world_size: int
) -> dict:
    """The JSON sidecar: everything export and eval need besides the weights."""
    mean, std = normalisation(config.model)
    return {
        "format": CHECKPOINT_FORMAT,
        "dermaseg_version": __version__,
        "epoch": epoch,
        "world_size": world_size,
        "taxonomy": [c.model_dump() for c in taxonomy.classes],
        "working_size": config.input.size,
        "normalisation": {"mean": list(mean), "std": list(std)},
        "config": config.model_dump(mode="json"),
        "metrics": metrics,
    }


def _loader(
    data: SegmentationData, sampler, batch_size: int, workers: int, seed: int
) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        data,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=False,
        persistent_workers=False,
        pin_memory=torch.cuda.is_available(),
    )


def _epoch_summary(
    epoch: int, epochs: int, loss: float, metrics: dict | None, seconds: float
) -> str:
    text = f"epoch {epoch}/{epochs}  loss {loss:.4f}"
    if metrics is not None:
        per_class = ", ".join(
            f"{name} {values['dice']:.3f}"
            for name, values in list(metrics["per_class"].items())[1:]
        )
        text += f"  val dice {metrics['mean_dice']:.3f} ({per_class})"
    return text + f"  {seconds:.1f}s"


def _metrics_row(
    epoch: int, step: int, loss: float, lr: float, metrics: dict | None, seconds: float
) -> dict:
    row: dict = {
        "epoch": epoch,
        "global_step": step,
        "train_loss": loss,
        "lr": lr,
        "seconds": seconds,
    }
    if metrics is not None:
        row.update(
            val_loss=metrics.get("loss"),
            val_mean_dice=metrics["mean_dice"],
            val_mean_iou=metrics["mean_iou"],
            val_mean_boundary_f1=metrics["mean_boundary_f1"],
        )
        for name, values in list(metrics["per_class"].items())[1:]:
            row[f"dice_{name}"] = values["dice"]
            row[f"iou_{name}"] = values["iou"]
            row[f"bf1_{name}"] = values["boundary_f1"]
            row[f"area_err_{name}"] = values["area_error_pct"]
    return row


def _save_overlays(model, photos, size, device, palette, path: Path) -> None:
    pipeline = eval_pipeline(size)
    images, truths, predictions = [], [], []
    model.eval()
    with torch.no_grad():
        for photo in photos:
            out = pipeline(image=photo.image, mask=photo.mask)
            tensor = torch.from_numpy(out["image"]).permute(2, 0, 1)[None].to(device)
            predictions.append(model(tensor).argmax(1)[0].cpu().numpy().astype(np.int64))
            images.append(out["image"])
            truths.append(out["mask"].astype(np.int64))
    model.train()
    save_overlays(path, overlay_grid(images, truths, predictions, palette))


def train(
    config: RunConfig,
    resume_dir: Path | None = None,
    splits: SplitAssignment | None = None,
    show_progress: bool = True,
) -> TrainResult:
    """Train a model as `config` says; resume from `resume_dir`/weights/last when given."""
    runtime = distributed.setup(config.train)
    try:
        return _train(config, runtime, resume_dir, splits, show_progress)
    finally:
        distributed.teardown(runtime)


def _train(
    config: RunConfig,
    runtime: distributed.Runtime,
    resume_dir: Path | None,
    splits: SplitAssignment | None,
    show_progress: bool,
) -> TrainResult:
    cfg, main = config.train, runtime.is_main
    distributed.seed_everything(cfg.seed + runtime.rank)

    # ---- data
    dataset = Dataset.open(config.data)
    if splits is None and resume_dir is not None and (resume_dir / "splits.json").exists():
        splits = _read_splits(resume_dir / "splits.json")
    if splits is not None:
        dataset.__dict__["splits"] = splits
    train_records, val_records = dataset.split_records("train"), dataset.split_records("val")
    if not train_records or not val_records:
        raise DermasegError(
            f"{config.data}: need photos in both train ({len(train_records)}) "
            f"and val ({len(val_records)}) splits"
        )
    size = config.input.size
    train_photos, bad_train = load_photos(dataset, train_records, size, keep=cfg.cache)
    val_photos, bad_val = load_photos(dataset, val_records, size, keep=cfg.cache)
    if main and (bad_train or bad_val):
        for error in bad_train + bad_val:
            err_console.print(f"[yellow]skipped[/] {error}")
        err_console.print(
            f"[yellow]{len(bad_train) + len(bad_val)} photos skipped; "
            f"`dermaseg data check {config.data}` lists every problem[/]"
        )
    augment = train_pipeline(config.augment, size, config.input.crop)
    augment.set_random_seed(cfg.seed + runtime.rank)
    train_data = SegmentationData(train_photos, augment, dataset, size)
    val_data = SegmentationData(val_photos, eval_pipeline(size), dataset, size)
    sampler = ResumableSampler(train_data, runtime.world_size, runtime.rank, True, cfg.seed)
    train_loader = _loader(train_data, sampler, cfg.batch_size, cfg.workers, cfg.seed)
    val_loader = _loader(val_data, None, cfg.batch_size, 0, cfg.seed)

    # ---- model, loss, optimiser, schedule
    taxonomy = dataset.taxonomy
    model = build_model(config.model, taxonomy.num_classes)
    if config.model.init_from and resume_dir is None:  # fine-tuning (train/finetune.py)
        init_from_checkpoint(model, Path(config.model.init_from), taxonomy)
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config.loss, taxonomy.num_classes).to(runtime.device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay
    )
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    warmup = round(config.optim.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        partial(
            lr_factor,
            total=total_steps,
            warmup=warmup,
            schedule=config.optim.schedule,
            power=config.optim.poly_power,
        ),
    )
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)

    # ---- run folder and resume
    state = Counters()
    if resume_dir is not None:
        run_dir = resume_dir
        loaded = load_checkpoint(run_dir / "weights" / "last")
        model.load_state_dict(loaded.model_state)
        if loaded.train_state is None:
            raise DermasegError(f"{run_dir}: last checkpoint has no training state to resume")
        restore_train_state(optimizer, scheduler, scaler, loaded.train_state)
        state = Counters(**{f.name: getattr(loaded.train_state, f.name) for f in fields(Counters)})
        if main:
            err_console.print(
                f"Resuming {run_dir} at epoch {state.epoch + 1}, step {state.step_in_epoch}"
            )
    elif main:
        run_dir = new_run_dir(Path(config.runs_dir), config.name)
    run_dir = _broadcast_run_dir(run_dir if main or resume_dir else None, runtime)
    log = RunLog(run_dir) if main else None
    if main:
        write_text(run_dir / "config.yaml", dump_config(config))
        write_json(run_dir / "augment.json", A.to_dict(augment))
        write_json(
            run_dir / "splits.json", {name: dataset.splits.ids(name) for name in SPLIT_NAMES}
        )
        if log is not None:
            log.truncate(state.epoch)
    net = model
    if runtime.distributed:  # frozen encoder epochs leave parameters without gradients
        unused = config.model.freeze_encoder_epochs > state.epoch
        net = DistributedDataParallel(model, find_unused_parameters=unused)
    weights = run_dir / "weights"

    def save(stem: str, epoch: int, metrics: dict | None, with_state: bool) -> None:
        train_state = (
            capture_train_state(optimizer, scheduler, scaler, **asdict(state))
            if with_state
            else None
        )
        save_checkpoint(
            weights / stem,
            model.state_dict(),
            checkpoint_meta(config, taxonomy, epoch, metrics, runtime.world_size),
            train_state,
        )

    # ---- the loop
    best_metrics, interrupted = None, False
    with stop_on_sigint() as requested:
        for epoch in range(state.epoch, cfg.epochs):
            started = time.perf_counter()
            sampler.set_epoch(epoch)
            sampler.skip = state.step_in_epoch * cfg.batch_size
            model.train()
            set_encoder_trainable(model, epoch >= config.model.freeze_encoder_epochs)
            if cfg.workers == 0:
                augment.set_random_seed(cfg.seed + 1000 * epoch + runtime.rank)
            losses, images_seen = [], 0
            for images, masks in _progress(
                train_loader, f"epoch {epoch + 1}/{cfg.epochs}", show_progress and main, losses
            ):
                images = images.to(runtime.device, non_blocking=True)
                masks = masks.to(runtime.device, non_blocking=True)
                if runtime.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                with torch.autocast(
                    runtime.device.type,
                    dtype=runtime.amp_dtype,
                    enabled=runtime.amp_dtype is not None,
                ):
                    logits = net(images)
                loss = loss_fn(logits.float(), masks)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if config.optim.grad_clip:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                losses.append(loss.item())
                images_seen += images.shape[0]
                state.step_in_epoch += 1
                state.global_step += 1
                if distributed.any_rank(requested["stop"], runtime):
                    interrupted = True
                    break
            if interrupted:
                if main:
                    save("last", epoch, None, with_state=True)
                break
            train_seconds = time.perf_counter() - started
            state.epoch, state.step_in_epoch = epoch + 1, 0
            train_loss = float(np.mean(losses)) if losses else float("nan")
            metrics = None
            last_epoch = epoch + 1 == cfg.epochs
            if main and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                metrics = evaluate(
                    model, val_loader, runtime.device, taxonomy.names, loss_fn, runtime.amp_dtype
                )
                score = metrics["fixed_mean_dice"]  # metrics.fixed_class_mean: a fixed class set
                improved = state.best_metric is None or score > state.best_metric
                if improved:
                    state.best_metric, state.epochs_without_improvement = score, 0
                    best_metrics = metrics
                    save("best", epoch + 1, metrics, with_state=False)
                else:
                    state.epochs_without_improvement += 1
                if cfg.overlay_every and ((epoch + 1) % cfg.overlay_every == 0 or last_epoch):
                    _save_overlays(
                        model,
                        [val_data.photo(i) for i in range(min(cfg.overlay_count, len(val_data)))],
                        size,
                        runtime.device,
                        taxonomy.palette,
                        run_dir / "overlays" / f"epoch_{epoch + 1:03d}.png",
                    )
            seconds = time.perf_counter() - started
            if main:
                save("last", epoch + 1, metrics, with_state=True)
                row = _metrics_row(
                    epoch + 1,
                    state.global_step,
                    train_loss,
                    scheduler.get_last_lr()[0],
                    metrics,
                    seconds,
                )
                row["train_seconds"] = train_seconds
                row["train_images_per_s"] = images_seen * runtime.world_size / train_seconds
                log.log(row)
                err_console.print(
                    _epoch_summary(epoch + 1, cfg.epochs, train_loss, metrics, seconds)
                )
            stop = (
                cfg.early_stop_patience > 0
                and state.epochs_without_improvement >= cfg.early_stop_patience
            )
            if distributed.any_rank(main and stop, runtime):
                if main:
                    err_console.print(
                        f"Early stop: no improvement for {cfg.early_stop_patience} epochs"
                    )
                break
            distributed.barrier(runtime)
    if log is not None:
        log.close()
    if best_metrics is None and main and checkpoint_exists(weights / "best"):
        best_metrics = load_checkpoint(weights / "best").meta.get("metrics")
    return TrainResult(run_dir, state.epoch, state.best_metric, best_metrics, interrupted)


def _read_splits(path: Path) -> SplitAssignment:
    """The split a run was started with, so a resumed run validates on the same photos."""
    listed = read_split_file(path)
    return SplitAssignment({i: name for name, ids in listed.items() for i in ids}, [])


def _broadcast_run_dir(run_dir: Path | None, runtime: distributed.Runtime) -> Path:
    """Every rank learns the run folder rank 0 created (sent as UTF-8 bytes, no pickling)."""
    if not runtime.distributed:
        assert run_dir is not None
        return run_dir
    import torch.distributed as dist

    encoded = str(run_dir).encode() if run_dir is not None else b""
    length = torch.tensor([len(encoded)], dtype=torch.int64, device=runtime.device)
    dist.broadcast(length, src=0)
    buffer = torch.zeros(int(length.item()), dtype=torch.uint8, device=runtime.device)
    if runtime.is_main:
        buffer.copy_(torch.frombuffer(bytearray(encoded), dtype=torch.uint8))
    dist.broadcast(buffer, src=0)
    return Path(bytes(buffer.cpu().tolist()).decode())


def _progress(loader: DataLoader, description: str, enabled: bool, losses: list[float]):
    """Iterate the loader under a rich progress bar showing the running loss and ETA."""
    if not enabled or not err_console.is_terminal:
        yield from loader
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=len(loader), loss="-")
        for batch in loader:
            yield batch
            progress.update(task, advance=1, loss=f"{np.mean(losses[-20:]):.4f}" if losses else "-")
