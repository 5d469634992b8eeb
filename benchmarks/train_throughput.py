"""Benchmark: dermaseg's training images/s beside a plain hand-written smp loop, in one run, and
where each loop's wall time goes.

Both loops train the recipe's U-Net (encoder, decoder, classes, batch size, working size, crop,
precision, memory format) on the train split of the same N synthetic photos for the same number
of epochs; epoch 1 of each is warm-up and is not counted. The plain loop holds the photos as
tensors on the device (resized once), takes a random crop and flip per batch and runs AdamW on
Dice + CE: the fastest this network trains. dermaseg trains as `dermaseg train` does (its data
loader and augmentation, validation every epoch, background checkpoints, logging); its figures
come from the run's own metrics.csv, which times each epoch's parts: training steps
(forward, backward, optimiser), data wait, validation, checkpointing and the rest.

Printed: images/s of each over its training (steps and batches); dermaseg's images/s over whole
epochs too (validation and checkpoints included); the share of each loop's wall time outside
forward/backward/optimiser; dermaseg's share outside training steps and validation (data wait +
checkpoint + other; goal on the CPU: at most 5 %) and its checkpoint share (goal under 2 %).
On CUDA the plain loop's steps are timed with CUDA events; dermaseg's parts are host times (its
data wait can overlap queued GPU work), with a device sync at the end of each epoch's steps.

Usage: python benchmarks/train_throughput.py --device cpu|cuda [--photos 2000] [--epochs 3]
       [--recipe cpu-lite|gpu-lite2|...] [--photo-size 512] [--json]
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import segmentation_models_pytorch as smp
import torch
from cpu_report import cpu_line

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.synth import generate_dataset
from dermaseg.train import distributed
from dermaseg.train.config import RunConfig, load_run_config
from dermaseg.train.trainer import train

PARTS = ("step", "data_wait", "val", "checkpoint", "other")


def square_tensors(data: Path, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The train split resized (longer side `size`, INTER_AREA) and padded to size x size."""
    dataset = Dataset.open(data)
    images, masks = [], []
    for record in dataset.split_records("train"):
        sample = dataset.load(record)
        scale = size / max(sample.mask.shape)
        new = (round(sample.mask.shape[1] * scale), round(sample.mask.shape[0] * scale))
        image = np.zeros((size, size, 3), np.uint8)
        mask = np.full((size, size), 255, np.uint8)
        image[: new[1], : new[0]] = cv2.resize(sample.image, new, interpolation=cv2.INTER_AREA)
        mask[: new[1], : new[0]] = cv2.resize(sample.mask, new, interpolation=cv2.INTER_NEAREST)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        masks.append(torch.from_numpy(mask).long())
    return torch.stack(images), torch.stack(masks)


def plain_loop(data: Path, config: RunConfig, classes: int, epochs: int) -> dict:
    """A hand-written smp training loop; images/s and the share of time outside the steps."""
    runtime = distributed.setup(config.train)
    device, batch = runtime.device, config.train.batch_size
    size, crop = config.input.size, config.input.crop or config.input.size
    x, y = (t.to(device) for t in square_tensors(data, size))
    model = smp.Unet(
        config.model.encoder,
        encoder_weights=None,
        decoder_channels=tuple(config.model.decoder_channels),
        classes=classes,
    ).to(device)
    if runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    cuda = device.type == "cuda"
    seen, wall, in_steps = 0, 0.0, 0.0
    for epoch in range(epochs):
        if cuda:
            torch.cuda.synchronize()
        started, events, step_s = time.perf_counter(), [], 0.0
        for index in torch.randperm(len(x), device=device).split(batch):
            top, left = (int(v) for v in torch.randint(0, size - crop + 1, (2,)))
            inputs = x[index, :, top : top + crop, left : left + crop]
            targets = y[index, top : top + crop, left : left + crop]
            if torch.rand(()) < 0.5:
                inputs, targets = inputs.flip(-1), targets.flip(-1)
            inputs = (inputs.float() - 127.0) / 128.0
            if runtime.channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            mark = _mark(cuda)
            with torch.autocast(device.type, runtime.amp_dtype, enabled=bool(runtime.amp_dtype)):
                logits = model(inputs)
            loss = dice(logits.float(), targets) + ce(logits.float(), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if cuda:
                events.append((mark, _mark(True)))
            else:
                step_s += time.perf_counter() - mark
            if epoch:
                seen += len(index)
        if cuda:
            torch.cuda.synchronize()
            step_s = sum(a.elapsed_time(b) for a, b in events) / 1000
        if epoch:
            wall += time.perf_counter() - started
            in_steps += step_s
    return {
        "images_per_s": seen / wall,
        "outside_steps_share": 1 - in_steps / wall,
        "seconds": wall,
        "train_photos": len(x),
    }


def _mark(cuda: bool):
    if not cuda:
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def dermaseg_loop(config: RunConfig) -> dict:
    """`dermaseg train` as a user runs it; figures from its metrics.csv (epochs 2..N)."""
    result = train(config, show_progress=False)
    with (result.run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))[1:]
    total = {p: sum(float(r[f"{p}_seconds"]) for r in rows) for p in PARTS}
    wall = sum(float(r["seconds"]) for r in rows)
    train_s = sum(float(r["train_seconds"]) for r in rows)
    seen = sum(float(r["train_images_per_s"]) * float(r["train_seconds"]) for r in rows)
    outside = total["data_wait"] + total["checkpoint"] + total["other"]
    return {
        "images_per_s": seen / train_s,
        "images_per_s_whole_epochs": seen / wall,
        "outside_steps_share": 1 - total["step"] / wall,
        "outside_steps_and_validation_share": outside / wall,
        "share": {p: total[p] / wall for p in PARTS},
        "seconds_per_epoch": wall / len(rows),
        "per_epoch": [
            {"epoch": int(r["epoch"])}
            | {p: round(float(r[f"{p}_seconds"]), 3) for p in PARTS}
            | {"seconds": round(float(r["seconds"]), 3)}
            for r in rows
        ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--photos", type=int, default=2000, help="synthetic photos (all splits)")
    parser.add_argument("--photo-size", type=int, default=512, help="synthetic photo side, px")
    parser.add_argument("--recipe", default=None, help="default: cpu-lite, or gpu-lite2 on cuda")
    parser.add_argument("--epochs", type=int, default=3, help="epoch 1 is warm-up")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("overrides", nargs="*", help="recipe overrides, e.g. train.batch_size=4")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (epoch 1 is warm-up)")
    recipe = args.recipe or ("gpu-lite2" if args.device == "cuda" else "cpu-lite")
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        generate_dataset(data, n=args.photos, size=args.photo_size, seed=0)
        synth_s = time.perf_counter() - started
        config = load_run_config(
            recipe,
            [
                f"data={data}",
                f"runs_dir={Path(tmp) / 'runs'}",
                f"train.epochs={args.epochs}",
                f"train.device={args.device}",
                "train.early_stop_patience=0",
                *args.overrides,
            ],
        )
        classes = Dataset.open(data).taxonomy.num_classes
        plain = plain_loop(data, config, classes, args.epochs)
        ours = dermaseg_loop(config)
    report = {
        "cpu": cpu_line(),
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "recipe": recipe,
        "photos": args.photos,
        "train_photos": plain.pop("train_photos"),
        "synth_seconds": round(synth_s, 1),
        "epochs_timed": args.epochs - 1,
        "plain_smp": {k: round(v, 4) for k, v in plain.items()},
        "dermaseg": ours,
        "ratio_images_per_s": round(ours["images_per_s"] / plain["images_per_s"], 3),
    }
    if args.json:
        print(json.dumps(report))
        return
    print(report["cpu"])
    print(
        f"device {report['device']}, {report['torch_threads']} torch threads, recipe {recipe}, "
        f"{args.photos} synthetic photos of {args.photo_size} px "
        f"({report['train_photos']} in the train split, made in {synth_s:.0f} s), "
        f"{args.epochs - 1} timed epochs"
    )
    print(f"{'':38}{'plain smp':>12}{'dermaseg':>12}")
    print(
        f"{'images/s (training)':38}{plain['images_per_s']:>12.2f}{ours['images_per_s']:>12.2f}"
        f"   ratio {report['ratio_images_per_s']:.3f} (goal >= 0.9 on a GPU)"
    )
    print(f"{'images/s (whole epochs)':38}{'':>12}{ours['images_per_s_whole_epochs']:>12.2f}")
    print(
        f"{'outside forward/backward/optimiser':38}{plain['outside_steps_share']:>12.1%}"
        f"{ours['outside_steps_share']:>12.1%}"
    )
    print(
        f"{'outside steps and validation':38}{'':>12}"
        f"{ours['outside_steps_and_validation_share']:>12.1%}   (goal <= 5 % on the CPU)"
    )
    print(f"{'checkpointing':38}{'':>12}{ours['share']['checkpoint']:>12.1%}   (goal < 2 %)")
    print(
        "dermaseg epoch parts: "
        + ", ".join(f"{p} {share:.1%}" for p, share in ours["share"].items())
        + f" of {ours['seconds_per_epoch']:.1f} s per epoch"
    )
    for row in ours["per_epoch"]:
        print("  epoch " + ", ".join(f"{k} {v}" for k, v in row.items() if k != "epoch")
              .join([f"{row['epoch']}: ", " s"]))  # fmt: skip


if __name__ == "__main__":
    main()
