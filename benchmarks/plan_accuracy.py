"""Treatable area of `dermaseg plan` with a model vs the generator's truth on new synthetic photos.

    python benchmarks/plan_accuracy.py runs/demo/model.onnx [--n 40 --size 256 --seed 101]

Photos come from a seed the model never saw; each goes through the same code as `dermaseg plan`
(marker calibration included). Prints per-photo and aggregate treatable area error.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from dermaseg.datasets.synth import generate_dataset
from dermaseg.infer.batch import BatchPlanner
from dermaseg.infer.session import PlanningModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=101)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = generate_dataset(Path(tmp) / "data", args.n, args.size, args.seed, 1.0)
        model = PlanningModel(args.model)
        treatable = [c.name for c in model.taxonomy.classes if c.treatable]
        planner = BatchPlanner(Path(tmp) / "plans", model=model)
        photos = [Path(tmp) / "data" / e["image"] for e in manifest["photos"]]
        start = time.perf_counter()
        result = planner.run(photos)
        elapsed = time.perf_counter() - start
    assert not result.failed, result.failed
    errors, true_sum, planned_sum = [], 0.0, 0.0
    print(f"{'photo':<14}{'kind':<7}{'true mm²':>10}{'planned mm²':>13}{'error':>9}")
    for entry, item in zip(manifest["photos"], result.planned, strict=True):
        scale_ok = item.mm_per_pixel is not None
        true_area = sum(entry["class_area_mm2"][name] for name in treatable)
        planned = item.treatable_area_mm2 if scale_ok else float("nan")
        error = (planned - true_area) / true_area * 100 if true_area else float("nan")
        true_sum += true_area
        planned_sum += planned
        if true_area:
            errors.append(abs(error))
        print(
            f"{entry['id']:<14}{entry['kind']:<7}{true_area:>10.1f}{planned:>13.1f}{error:>8.1f}%"
        )
    print(
        f"\n{len(photos)} photos planned in {elapsed:.1f} s; treatable area error: "
        f"aggregate {100 * (planned_sum - true_sum) / true_sum:+.1f}%, "
        f"median |error| {statistics.median(errors):.1f}%, "
        f"photos within 10%: {sum(e <= 10 for e in errors)}/{len(errors)} (photos with a "
        "treatable area)"
    )


if __name__ == "__main__":
    main()
