"""Benchmark: planning a folder of photos keeps memory flat (RSS after 500 within 10 % of after 50).

Usage: python benchmarks/plan_memory_flat.py [--n 500] [--size 320x240] [--model MODEL.onnx]

Synthetic skin and scalp photos (25 distinct ones, repeated under new names) are planned
in-process by `dermaseg.infer.batch.BatchPlanner`, from their true masks (the `--mask` mode) or with
a planning model. VmRSS is read from /proc/self/status after each photo. Prints the RSS after
the first 50 photos and after all of them, and their ratio; exit code 1 above 1.10.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from dermaseg.datasets.images import encode_png
from dermaseg.datasets.synth import generate_photo
from dermaseg.datasets.taxonomy import DEFAULT_TAXONOMY
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
from dermaseg.infer.session import PlanningModel

DISTINCT = 25
EARLY = 50
LIMIT = 1.10


def vm_rss_kib() -> int:
    """Resident set size of this process, KiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_photos(folder: Path, n: int, size: tuple[int, int]) -> tuple[list[Path], list[Path]]:
    """`n` JPEG photos and their palette PNG masks, cycling through DISTINCT synthetic ones."""
    folder.mkdir(parents=True)
    sources = [generate_photo(seed, size) for seed in range(DISTINCT)]
    photos, masks = [], []
    for i in range(n):
        source = sources[i % DISTINCT]
        photo, mask = folder / f"p{i:04d}.jpg", folder / f"p{i:04d}.mask.png"
        Image.fromarray(source.rgb).save(photo, quality=90)
        mask.write_bytes(encode_png(source.mask, palette=DEFAULT_TAXONOMY.palette))
        photos.append(photo)
        masks.append(mask)
    return photos, masks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--size", default="320x240", help="photo size WxH")
    parser.add_argument("--model", type=Path, help="plan with this model instead of the masks")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        photos, masks = write_photos(Path(tmp) / "photos", args.n, (width, height))
        planner = BatchPlanner(
            Path(tmp) / "plans",
            model=PlanningModel(args.model) if args.model else None,
            calibration=CalibrationSettings(),  # marker detection on, as in the clinic
        )
        samples: list[int] = []
        started = time.perf_counter()
        result = planner.run(
            photos, None if args.model else masks, progress=lambda _: samples.append(vm_rss_kib())
        )
        seconds = time.perf_counter() - started
    if result.failed:
        print(f"{len(result.failed)} photos failed, first: {result.failed[0][1]}")
        return 1
    early, final = samples[min(EARLY, len(samples)) - 1], samples[-1]
    ratio = final / early
    mode = f"model {args.model.name}" if args.model else "true masks (--mask mode)"
    print(
        f"planned {len(result.planned)} photos of {width}x{height} from {mode} in {seconds:.1f} s"
    )
    print(f"RSS after {EARLY} photos: {early / 1024:.1f} MiB")
    print(f"RSS after {len(samples)} photos: {final / 1024:.1f} MiB")
    print(f"peak sampled RSS: {max(samples) / 1024:.1f} MiB")
    print(f"ratio: {ratio:.3f} (limit {LIMIT:.2f}) -> {'OK' if ratio <= LIMIT else 'FAILED'}")
    return 0 if ratio <= LIMIT else 1


if __name__ == "__main__":
    sys.exit(main())
