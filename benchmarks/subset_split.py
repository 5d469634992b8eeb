"""A smaller copy of a mask-folder dataset's split, for benchmarks of small labelled sets.

Writes OUT/ with `images` and `masks` linked to the source's (nothing is copied), the source's
dataset.yaml, and a splits.yaml that keeps N train and M val photos drawn at random (fixed
seed) from the source's train and val splits and the whole test split, so the scores stay
comparable with the full set's:

  python benchmarks/subset_split.py ../shared/realdata/fuseg-wounds small/fuseg-wounds-36 \
      --train 36 --val 8
  python benchmarks/real_data.py fuseg-wounds-36 --data-root small --budget-minutes 15 ...
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import yaml

from dermaseg.datasets.splits import read_split_file
from dermaseg.errors import DermasegError


def subset(splits: dict, train: int, val: int, seed: int) -> dict:
    """`train` and `val` ids drawn at random from those splits (returned sorted), the test
    split kept whole."""
    rng = random.Random(seed)
    out = {}
    for name, count in (("train", train), ("val", val)):
        ids = list(splits.get(name) or [])
        if count > len(ids):
            raise SystemExit(f"--{name} {count}: the source's {name} split has {len(ids)} photos")
        out[name] = sorted(rng.sample(ids, count))
    out["test"] = list(splits.get("test") or [])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a mask-folder dataset with a splits.yaml")
    parser.add_argument("out", type=Path, help="new folder (must not exist)")
    parser.add_argument("--train", type=int, required=True)
    parser.add_argument("--val", type=int, required=True)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    splits_file = args.source / "splits.yaml"
    if not splits_file.is_file():
        raise SystemExit(f"{args.source}: no splits.yaml (a dataset with its own split is needed)")
    if args.out.exists():
        raise SystemExit(f"{args.out}: already exists")
    try:
        splits = read_split_file(splits_file)
    except DermasegError as error:
        raise SystemExit(str(error)) from None
    chosen = subset(splits, args.train, args.val, args.seed)
    args.out.mkdir(parents=True)
    for folder in ("images", "masks"):
        (args.out / folder).symlink_to((args.source / folder).resolve())
    (args.out / "dataset.yaml").write_text((args.source / "dataset.yaml").read_text())
    text = yaml.safe_dump(chosen, default_flow_style=None, width=10**6)
    (args.out / "splits.yaml").write_text(text)
    counts = ", ".join(f"{name} {len(ids)}" for name, ids in chosen.items())
    print(f"{args.out}: {counts}", file=sys.stderr)


if __name__ == "__main__":
    main()
