"""Benchmark: dermaseg's training images/s against a plain hand-written smp loop, same run.

Both train the same U-Net (same encoder, decoder, classes, batch size, working size) on the same
synthetic photos for the same number of epochs; the first epoch of each is warm-up and is not
counted. dermaseg's figure is its own `train_images_per_s` (training steps with data loading and
augmentation; validation and checkpoints excluded). Goal (issue 3): ratio >= 0.9.

Usage: python benchmarks/train_throughput.py [--n 64] [--size 160] [--batch 4] [--epochs 3]
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

from dermaseg.datasets.dataset import Dataset
from dermaseg.datasets.synth import generate_dataset
from dermaseg.train.config import load_run_config
from dermaseg.train.trainer import train

DECODER = [96, 64, 48, 32, 16]


def plain_loop(data: Path, size: int, batch: int, epochs: int) -> float:
    """A hand-written smp training loop; returns images/s over epochs 2..N."""
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
    x, y = torch.stack(images), torch.stack(masks)
    model = smp.Unet(
        "tu-efficientnet_lite0", encoder_weights=None, decoder_channels=DECODER, classes=4
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    dice = smp.losses.DiceLoss("multiclass", ignore_index=255)
    ce = torch.nn.CrossEntropyLoss(ignore_index=255)
    seen, seconds = 0, 0.0
    for epoch in range(epochs):
        started = time.perf_counter()
        for index in torch.randperm(len(x)).split(batch):
            inputs = (x[index].float() - 127.0) / 128.0
            if torch.rand(()) < 0.5:
                inputs, targets = inputs.flip(-1), y[index].flip(-1)
            else:
                targets = y[index]
            logits = model(inputs)
            loss = dice(logits, targets) + ce(logits, targets)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if epoch:
                seen += len(index)
        if epoch:
            seconds += time.perf_counter() - started
    return seen / seconds


def dermaseg_loop(data: Path, runs: Path, size: int, batch: int, epochs: int) -> float:
    config = load_run_config(
        "synthetic-demo",
        [
            f"data={data}",
            f"runs_dir={runs}",
            "model.encoder_weights=null",
            f"model.decoder_channels={DECODER}",
            f"input.size={size}",
            f"train.batch_size={batch}",
            f"train.epochs={epochs}",
            "train.workers=0",
            "train.overlay_every=0",
            "train.channels_last=false",
        ],
    )
    result = train(config, show_progress=False)
    with (result.run_dir / "metrics.csv").open() as handle:
        rows = list(csv.DictReader(handle))[1:]
    seen = sum(float(r["train_images_per_s"]) * float(r["train_seconds"]) for r in rows)
    return seen / sum(float(r["train_seconds"]) for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        generate_dataset(data, n=args.n, size=256, seed=0)
        plain = plain_loop(data, args.size, args.batch, args.epochs)
        ours = dermaseg_loop(data, Path(tmp) / "runs", args.size, args.batch, args.epochs)
    report = {
        "size": args.size,
        "batch": args.batch,
        "threads": torch.get_num_threads(),
        "plain_smp_images_per_s": round(plain, 2),
        "dermaseg_images_per_s": round(ours, 2),
        "ratio": round(ours / plain, 3),
        "goal": 0.9,
        "meets_goal": ours / plain >= 0.9,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
