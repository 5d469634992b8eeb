"""Benchmark: `dermaseg data check` over synthetic photos (default 200 of 1024x768; goal < 20 s).

Usage: python benchmarks/data_check.py [--n 200] [--size 1024x768] [--keep DIR]
The dataset is generated first (not timed); then the real CLI is run in a subprocess and timed
end to end, including interpreter start-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dermaseg.datasets.synth import generate_dataset

GOAL_SECONDS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--size", default="1024x768")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "synth"
        started = time.perf_counter()
        generate_dataset(root, n=args.n, size=(width, height), seed=0)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dermaseg", "data", "check", str(root), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        checked = time.perf_counter() - started
    report = json.loads(result.stdout)
    row = {
        "photos": report["photos"],
        "size": args.size,
        "errors": report["errors"],
        "generate_s": round(generated, 2),
        "check_s": round(checked, 2),
        "check_ms_per_photo": round(1000 * checked / max(report["photos"], 1), 1),
        "goal_s": GOAL_SECONDS,
        "meets_goal": checked < GOAL_SECONDS,
    }
    print(json.dumps(row))
    sys.exit(0 if result.returncode == 0 and row["meets_goal"] else 1)


if __name__ == "__main__":
    main()
