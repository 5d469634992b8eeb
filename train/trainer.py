"""The training loop: one readable function from config to checkpoints, single process or DDP.

Checkpoints go to `<run>/weights/{last,best}.safetensors` every `train.save_every` epochs (and
on Ctrl-C), so a run killed at any moment resumes with `--resume <run>` losing at most the
epochs since. The state is copied at the end of the epoch and written by a background thread
while the next epoch trains; an epoch's row in metrics.csv is written after its checkpoint.
Each row also says where the epoch's wall time went (steps, data wait, validation,
checkpointing, other).
"""

from __future__ import annotations

import math
import os
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
from dermaseg.train.budget import EARLY_ESTIMATE_STEPS, Horizon
from dermaseg.train.checkpoint import (
    capture_train_state,
    checkpoint_exists,
    copy_state,
    load_checkpoint,
    restore_train_state,
    snapshot,
    write_snapshot,
)
from dermaseg.train.config import RunConfig, dump_config
from dermaseg.train.data import ResumableSampler, SegmentationData, load_photos, seed_worker
from dermaseg.train.ema import build_ema, ema_state, restore_ema
from dermaseg.train.evaluate import evaluate
from dermaseg.train.finetune import init_from_checkpoint
from dermaseg.train.losses import build_loss
from dermaseg.train.model import build_model, normalisation, set_encoder_trainable
from dermaseg.train.runlog import (
    Background,
    EpochClock,
    RunLog,
    new_run_dir,
    overlay_grid,
    save_overlays,
)


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
    """The checkpoint's `meta`: everything export and eval need besides the weights (the file's
    format id and version are checkpoint.FORMAT and FORMAT_VERSION, in its header)."""
    mean, std = normalisation(config.model)
    return {
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
        persistent_workers=workers > 0,
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
    clock_started = time.perf_counter()
    cfg, main = config.train, runtime.is_main
    distributed.seed_everything(cfg.seed + runtime.rank)
    data = _prepare_data(config, runtime, resume_dir, splits)
    taxonomy = data.dataset.taxonomy

    # ---- model, loss, optimiser, schedule over the horizon (epochs, or what fits the budget)
    model = build_model(config.model, taxonomy.num_classes)
    if config.model.init_from and resume_dir is None:  # fine-tuning (train/finetune.py)
        init_from_checkpoint(model, Path(config.model.init_from), taxonomy)
    model = model.to(runtime.device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss(config.loss, taxonomy.num_classes).to(runtime.device)
    optimizer = _optimizer(model, config)
    horizon = Horizon(cfg.epochs, math.ceil(len(data.sampler) / cfg.batch_size), cfg.budget_minutes)
    scheduler = _lr_scheduler(optimizer, config, horizon)
    scaler = torch.amp.GradScaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    ema = build_ema(model, cfg)  # train.ema: validate, keep and export the averaged weights
    scored = model if ema is None else ema.module

    # ---- run folder: a new one, or the resumed one with its counters and optimiser state
    state = Counters()
    if resume_dir is not None:
        state = _resume(resume_dir, model, optimizer, scheduler, scaler, main, ema)
    run_dir = _broadcast_run_dir(
        resume_dir or (new_run_dir(Path(config.runs_dir), config.name) if main else None), runtime
    )
    log = _open_run_folder(run_dir, config, data, state.epoch) if main else None
    # a resumed run's budget counts the epochs it already ran; a fresh one its loading too
    if resume_dir is not None:
        horizon.started = time.perf_counter() - _seconds_spent(log)
    else:
        horizon.started = clock_started
    frozen = config.model.freeze_encoder_epochs > state.epoch
    # the first stages frozen before DDP wraps the model (it syncs what needs gradients then);
    # frozen encoder epochs are laid by the loop (DDP finds their unused parameters)
    set_encoder_trainable(model, True, config.model.frozen_stages)
    net = _training_net(model, config, runtime, frozen)
    if main:
        _say_start(config, runtime, data, model, horizon, run_dir, state.epoch)
    writer = Background()  # checkpoints, metrics and overlays are written while training goes on
    saving: list = []  # the checkpoint writes in progress

    def save(epoch: int, metrics: dict | None, best: bool = False, last: bool = False) -> None:
        """Copy the weights (and for `last` the training state) now; the background thread
        writes weights/best and weights/last while training goes on."""
        while saving:  # the previous checkpoints first: at most one epoch's copies in memory
            saving.pop().result()
        weights = copy_state(model.state_dict())
        meta = checkpoint_meta(config, taxonomy, epoch, metrics, runtime.world_size)
        if best:  # the scored weights: the EMA's with train.ema
            kept = weights if scored is model else copy_state(scored.state_dict())
            copied = snapshot(kept, meta, copied=True)
            saving.append(writer.submit(write_snapshot, run_dir / "weights" / "best", copied))
        if last:
            train_state = capture_train_state(
                optimizer, scheduler, scaler, **asdict(state), ema=ema_state(ema)
            )
            copied = snapshot(weights, meta, train_state, copied=True)
            saving.append(writer.submit(write_snapshot, run_dir / "weights" / "last", copied))

    def step(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (no host sync)."""
        with torch.autocast(
            runtime.device.type, dtype=runtime.amp_dtype, enabled=runtime.amp_dtype is not None
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
        if ema is not None:
            ema.update(model, step=state.global_step + 1)
        return loss.detach()

    # ---- the loop: train an epoch, validate, keep the best, checkpoint, log, re-plan
    best_metrics, interrupted = None, False
    clock = EpochClock(torch.cuda.synchronize if runtime.device.type == "cuda" else None)
    with stop_on_sigint() as requested, writer:
        while state.epoch < horizon.planned_epochs:
            epoch = state.epoch
            model.train()
            set_encoder_trainable(
                model, epoch >= config.model.freeze_encoder_epochs, config.model.frozen_stages
            )
            data.start_epoch(epoch, state.step_in_epoch)
            losses, images_seen, out_of_time = _LossMeter(), 0, False
            batches = _progress(
                data.train_loader,
                f"epoch {epoch + 1}/{horizon.planned_epochs}",
                show_progress and main,
                losses,
            )
            for images, masks in clock.timed(batches, "data_wait"):
                with clock.timing("step"):
                    losses.add(step(*_to_device(images, masks, runtime)))
                images_seen += images.shape[0]
                state.step_in_epoch += 1
                state.global_step += 1
                if state.step_in_epoch == EARLY_ESTIMATE_STEPS and not horizon.reserve_s:
                    per_image = clock.seconds["step"] / (images_seen or 1)
                    horizon.expect_validation(per_image * len(data.val_data) / 3)
                if runtime.distributed and state.global_step % STOP_CHECK_EVERY:
                    continue  # every few steps the ranks re-plan and agree on stopping
                horizon.step_taken(state.global_step)
                horizon.planned_steps = distributed.from_main(horizon.planned_steps, runtime)
                time_is_up = horizon.out_of_time() or horizon.reached(state.global_step)
                stop, out_of_time = distributed.any_rank_flags(
                    (requested["stop"], time_is_up), runtime
                )
                if stop or out_of_time:
                    interrupted = stop
                    break
            if interrupted:
                if main:
                    save(epoch, None, last=True)
                break
            clock.synced("step")  # the device's queued steps belong to the training steps
            train_seconds = clock.seconds["step"] + clock.seconds["data_wait"]
            state.epoch, state.step_in_epoch = epoch + 1, 0
            train_loss = losses.mean()
            metrics, improved = None, False
            last_epoch = out_of_time or epoch + 1 >= horizon.planned_epochs
            if main and ((epoch + 1) % cfg.val_every == 0 or last_epoch):
                overlay = cfg.overlay_every and ((epoch + 1) % cfg.overlay_every == 0 or last_epoch)
                examples = _Examples(cfg.overlay_count if overlay else 0)
                with clock.timing("val"):
                    metrics = evaluate(
                        scored, data.val_loader, runtime.device, taxonomy.names, loss_fn,
                        runtime.amp_dtype, on_batch=examples.add,
                    )  # fmt: skip
                score = metrics["fixed_mean_dice"]  # metrics.fixed_class_mean: a fixed class set
                improved = state.best_metric is None or score > state.best_metric
                if improved:
                    state.best_metric, state.epochs_without_improvement = score, 0
                    best_metrics = metrics
                else:
                    state.epochs_without_improvement += 1
                if examples.count:
                    path = run_dir / "overlays" / f"epoch_{epoch + 1:03d}.png"
                    writer.submit(examples.save, path, taxonomy.palette)
            save_last = last_epoch or (epoch + 1) % cfg.save_every == 0
            if main and (improved or save_last):
                with clock.timing("checkpoint"):
                    save(epoch + 1, metrics, best=improved, last=save_last)
            if metrics is not None:  # the time the last epoch's validation and checkpoint take
                horizon.expect_validation(clock.seconds["val"] + clock.seconds["checkpoint"])
            if out_of_time:
                horizon.end_at_epoch(epoch + 1)
            times = clock.lap()
            if log is not None:  # written after the epoch's checkpoint: the log never runs ahead
                row = _metrics_row(
                    epoch + 1, state.global_step, train_loss, scheduler.get_last_lr()[0], metrics,
                    times["seconds"],
                )  # fmt: skip
                row.update(
                    times,
                    train_seconds=train_seconds,
                    train_images_per_s=images_seen * runtime.world_size / train_seconds,
                    planned_epochs=horizon.planned_epochs,
                    elapsed_seconds=horizon.elapsed(),
                )
                writer.submit(log.log, row)
                err_console.print(
                    _epoch_summary(
                        epoch + 1, horizon.planned_epochs, train_loss, metrics, times["seconds"]
                    )
                )
            if _early_stop(cfg, state, runtime):
                break
            distributed.barrier(runtime)
    if log is not None:
        log.close()
    best = _best_meta(run_dir) if main else None
    if best_metrics is None and best is not None:
        best_metrics = best.get("metrics")
    result = TrainResult(run_dir, state.epoch, state.best_metric, best_metrics, interrupted)
    if main:
        _say_done(result, best, cfg.budget_minutes, horizon.elapsed())
    return result


# ---------------------------------------------------------------------------------------------
# the steps of `_train`, in the order it takes them

STOP_CHECK_EVERY = 8  # DDP: steps between re-plans and stop checks (collectives)


class _Examples:
    """The first `count` validation photos with truth and prediction, for the overlay grid."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.images: list[np.ndarray] = []
        self.truths: list[np.ndarray] = []
        self.predictions: list[np.ndarray] = []

    def add(self, images: torch.Tensor, masks: torch.Tensor, predictions: torch.Tensor) -> None:
        room = self.count - len(self.images)
        if room > 0:
            self.images += list(images[:room].permute(0, 2, 3, 1).cpu().numpy())
            self.truths += list(masks[:room].cpu().numpy().astype(np.int64))
            self.predictions += list(predictions[:room].cpu().numpy().astype(np.int64))

    def save(self, path: Path, palette: np.ndarray) -> None:
        save_overlays(path, overlay_grid(self.images, self.truths, self.predictions, palette))


class _LossMeter:
    """Sums the step losses on the device; reading the mean is the only host sync."""

    def __init__(self) -> None:
        self.total: torch.Tensor | None = None
        self.steps = 0

    def add(self, loss: torch.Tensor) -> None:
        self.total = loss if self.total is None else self.total + loss
        self.steps += 1

    def mean(self) -> float:
        return float(self.total / self.steps) if self.total is not None else float("nan")


@dataclass
class _Data:
    """The dataset, the train and val sets (photos kept in memory) and their loaders."""

    dataset: Dataset
    augment: A.Compose
    train_data: SegmentationData
    val_data: SegmentationData
    sampler: ResumableSampler
    train_loader: DataLoader
    val_loader: DataLoader
    workers: int
    seed: int
    rank: int
    batch_size: int

    def start_epoch(self, epoch: int, steps_done: int) -> None:
        """Shuffle for `epoch`; skip the batches a resumed epoch had already trained on."""
        self.sampler.set_epoch(epoch)
        self.sampler.skip = steps_done * self.batch_size
        if self.workers == 0:
            self.augment.set_random_seed(self.seed + 1000 * epoch + self.rank)


def _prepare_data(
    config: RunConfig,
    runtime: distributed.Runtime,
    resume_dir: Path | None,
    splits: SplitAssignment | None,
) -> _Data:
    cfg = config.train
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
    if runtime.is_main and (bad_train or bad_val):
        for error in bad_train + bad_val:
            err_console.print(f"[yellow]skipped[/] {error}")
        err_console.print(
            f"[yellow]{len(bad_train) + len(bad_val)} photos skipped; "
            f"`dermaseg data check {config.data}` lists every problem[/]"
        )
    augment = train_pipeline(config.augment, size, config.input.crop, config.input.crop_on_labels)
    augment.set_random_seed(cfg.seed + runtime.rank)
    train_data = SegmentationData(train_photos, augment, dataset, size)
    val_data = SegmentationData(val_photos, eval_pipeline(size), dataset, size)
    sampler = ResumableSampler(train_data, runtime.world_size, runtime.rank, True, cfg.seed)
    workers = min(cfg.workers, _cores_available())  # more workers than cores only thrash
    return _Data(
        dataset,
        augment,
        train_data,
        val_data,
        sampler,
        _loader(train_data, sampler, cfg.batch_size, workers, cfg.seed),
        _loader(val_data, None, cfg.batch_size, 0, cfg.seed),
        workers,
        cfg.seed,
        runtime.rank,
        cfg.batch_size,
    )


def _optimizer(model: torch.nn.Module, config: RunConfig) -> torch.optim.Optimizer:
    """AdamW over every parameter from the start, frozen encoder included: unfreezing builds
    nothing new (AdamW starts a parameter's moments at its first gradient, as it would have)."""
    fused = next(model.parameters()).is_cuda  # one kernel for all parameters on a GPU
    return torch.optim.AdamW(
        _parameter_groups(model, config.optim.lr, config.optim.encoder_lr_scale),
        lr=config.optim.lr,
        weight_decay=config.optim.weight_decay,
        fused=fused,
    )


def _parameter_groups(model: torch.nn.Module, lr: float, encoder_lr_scale: float) -> list[dict]:
    """One group for the whole network or, with `encoder_lr_scale` below 1, the encoder's
    parameters in a second group at that share of `lr` (the scheduler scales both alike)."""
    if encoder_lr_scale == 1:
        return [{"params": list(model.parameters())}]
    in_encoder = {id(p) for p in model.net.encoder.parameters()}
    encoder = [p for p in model.parameters() if id(p) in in_encoder]
    rest = [p for p in model.parameters() if id(p) not in in_encoder]
    return [{"params": rest}, {"params": encoder, "lr": lr * encoder_lr_scale}]


def _lr_scheduler(
    optimizer: torch.optim.Optimizer, config: RunConfig, horizon: Horizon
) -> torch.optim.lr_scheduler.LambdaLR:
    """Warm-up then decay over the horizon's steps (re-read every step: a budget re-plans)."""
    schedule = partial(lr_factor, schedule=config.optim.schedule, power=config.optim.poly_power)
    warmup = round(config.optim.warmup_epochs * horizon.steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: schedule(step, horizon.total_steps, horizon.warmup_steps(warmup))
    )


def _training_net(
    model: torch.nn.Module, config: RunConfig, runtime: distributed.Runtime, frozen: bool
) -> torch.nn.Module:
    """What the training steps call: `model` wrapped by DDP across ranks and compiled with
    `train.compile`. Checkpoints and validation use `model` itself, so state dict keys carry
    no `module.` or `_orig_mod.` prefix."""
    net = model
    if runtime.distributed:  # frozen encoder epochs leave parameters without gradients
        net = DistributedDataParallel(model, find_unused_parameters=frozen)
    if config.train.compile:
        net = torch.compile(net)
    return net


def _say_start(
    config: RunConfig,
    runtime: distributed.Runtime,
    data: _Data,
    model: torch.nn.Module,
    horizon: Horizon,
    run_dir: Path,
    epochs_done: int,
) -> None:
    """What the run will do, before it starts (stderr)."""
    cfg, size = config.train, config.input.size
    precision = {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[runtime.amp_dtype]
    params = sum(p.numel() for p in model.parameters())
    ranks = f" x{runtime.world_size}" if runtime.distributed else ""
    what = [
        f"device {runtime.device.type}{ranks}",
        precision,
        "channels_last" if runtime.channels_last else "contiguous",
        f"{data.workers} loader workers",
    ]
    if cfg.compile:
        what.append("torch.compile")
    crop = f", crops {config.input.crop}" if config.input.crop else ""
    frozen, stages = config.model.freeze_encoder_epochs, config.model.frozen_stages
    plan = f"{cfg.epochs} epochs of {horizon.steps_per_epoch} steps"
    if cfg.budget_minutes:
        plan = f"at most {plan}, in {cfg.budget_minutes:g} min"
    lines = [
        f"Training {config.name} -> {run_dir}"
        + (f" (resuming after epoch {epochs_done})" if epochs_done else ""),
        "  " + ", ".join(what),
        f"  data {config.data}: {len(data.train_data)} train / {len(data.val_data)} val photos"
        f" at {size} px{crop}, batch {cfg.batch_size}",
        f"  model U-Net {config.model.encoder}, {params / 1e6:.2f}M parameters"
        + (f", encoder frozen for {frozen} epochs" if frozen else "")
        + (f", first {stages} encoder stages frozen" if stages else ""),
        f"  {plan}, checkpoint every {cfg.save_every} epoch(s)",
    ]
    err_console.print("\n".join(lines), markup=False)


def _best_meta(run_dir: Path) -> dict | None:
    best = run_dir / "weights" / "best"
    return load_checkpoint(best).meta if checkpoint_exists(best) else None


def _say_done(result: TrainResult, best: dict | None, budget: float | None, seconds: float) -> None:
    """Where things are and what to run next (stderr)."""
    run_dir, weights = result.run_dir, result.run_dir / "weights"
    how = "interrupted" if result.interrupted else "done"
    lines = [f"Training {how}: {result.epochs_done} epochs in {seconds / 60:.1f} min"]
    if budget:
        lines.append(
            f"  Budget {budget:g} min: {result.epochs_done} epochs done in {seconds / 60:.1f} min"
        )
    if best is not None:
        dice = (best.get("metrics") or {}).get("fixed_mean_dice")
        score = f", val Dice {dice:.3f} on the fixed class set" if dice is not None else ""
        lines.append(f"  best    {weights / 'best.safetensors'} (epoch {best['epoch']}{score})")
    lines += [
        f"  last    {weights / 'last.safetensors'} (resume: dermaseg train --resume {run_dir})",
        f"  log     {run_dir / 'metrics.csv'}, {run_dir / 'curves.png'}",
    ]
    if best is not None:
        lines.append(f"Next: dermaseg export {weights / 'best.safetensors'}")
    err_console.print("\n".join(lines), markup=False)


def _resume(run_dir: Path, model, optimizer, scheduler, scaler, main: bool, ema=None) -> Counters:
    """Load the last checkpoint's weights and training state; returns where training stands."""
    loaded = load_checkpoint(run_dir / "weights" / "last")
    model.load_state_dict(loaded.model_state)
    if loaded.train_state is None:
        raise DermasegError(f"{run_dir}: last checkpoint has no training state to resume")
    restore_train_state(optimizer, scheduler, scaler, loaded.train_state)
    restore_ema(ema, loaded.train_state.ema, model)
    state = Counters(**{f.name: getattr(loaded.train_state, f.name) for f in fields(Counters)})
    if main:
        err_console.print(
            f"Resuming {run_dir} at epoch {state.epoch + 1}, step {state.step_in_epoch}"
        )
    return state


def _open_run_folder(run_dir: Path, config: RunConfig, data: _Data, epochs_done: int) -> RunLog:
    """Write the resolved config, augmentation and split; open the metrics log (rank 0)."""
    write_text(run_dir / "config.yaml", dump_config(config))
    write_json(run_dir / "augment.json", A.to_dict(data.augment))
    write_json(
        run_dir / "splits.json", {name: data.dataset.splits.ids(name) for name in SPLIT_NAMES}
    )
    log = RunLog(run_dir)
    log.truncate(epochs_done)
    return log


def _to_device(images: torch.Tensor, masks: torch.Tensor, runtime: distributed.Runtime):
    images = images.to(runtime.device, non_blocking=True)
    masks = masks.to(runtime.device, non_blocking=True)
    if runtime.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, masks


def _early_stop(cfg, state: Counters, runtime: distributed.Runtime) -> bool:
    stop = (
        cfg.early_stop_patience > 0 and state.epochs_without_improvement >= cfg.early_stop_patience
    )
    if distributed.any_rank(runtime.is_main and stop, runtime):
        if runtime.is_main:
            err_console.print(f"Early stop: no improvement for {cfg.early_stop_patience} epochs")
        return True
    return False


def _cores_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _seconds_spent(log: RunLog | None) -> float:
    """Wall-clock seconds of the epochs a resumed run already logged (rank 0; else 0)."""
    if log is None:
        return 0.0
    return sum(float(row.get("seconds") or 0) for row in log.rows)


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


def _progress(loader: DataLoader, description: str, enabled: bool, losses: _LossMeter):
    """Iterate the loader under a rich progress bar; the running loss is read every 10 steps
    (reading it syncs with the device)."""
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
        for index, batch in enumerate(loader):
            yield batch
            if index % 10 == 9:
                progress.update(task, loss=f"{losses.mean():.4f}")
            progress.update(task, advance=1)
