"""Visit comparison and SMP density vs the synthetic generator's exact truth, side by side.

    python benchmarks/visit_scores_accuracy.py [--pairs 10 --scalps 20 --seed 100]

* compare: visit pairs (one scene, known change, known camera move: rotation, zoom, perspective)
  planned from their true masks and compared exactly as `dermaseg compare` does; relative error of
  each change category's area (new, grown, shrunk, cleared, unchanged), patches whose status
  matches the truth, and the alignment method; then pairs of different scenes (all must be
  refused);
* SMP density on JPEG close-ups of dark stubble (50-130 strands/cm², 0.06-0.10 mm wide):
  density and width error.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from cpu_report import cpu_line
from PIL import Image

from dermaseg.datasets.images import decode_image, encode_jpeg, encode_png
from dermaseg.datasets.synth_scalp import smp_scalp
from dermaseg.datasets.synth_visits import CameraMove, other_scene, visit_pair
from dermaseg.infer.align import AlignmentError, local_zoom
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
from dermaseg.infer.compare import compare_visits, find_visit
from dermaseg.infer.smp_density import measure_density


def plan(folder: Path, name: str, rgb, mask, scale: float) -> Path:
    Image.fromarray(rgb).save(folder / f"{name}.jpg", quality=92)
    truth = folder / f"{name}.truth.png"
    truth.write_bytes(encode_png(mask))
    planner = BatchPlanner(folder, calibration=CalibrationSettings(mm_per_pixel=scale))
    planner.plan_photo(folder / f"{name}.jpg", name, truth)
    return folder / f"{name}.plan.json"


def random_move(rng: np.random.Generator) -> CameraMove:
    return CameraMove(
        rotation_deg=float(rng.uniform(-25, 25)),
        scale=float(rng.uniform(0.8, 1.3)),
        tilt=tuple(float(v) for v in rng.uniform(-0.15, 0.15, 2)),
        shift=tuple(float(v) for v in rng.uniform(-0.04, 0.04, 2)),
    )


def compare_pairs(n: int, seed: int, tmp: Path) -> None:
    rng = np.random.default_rng(seed)
    errors: dict[str, list[float]] = {}
    statuses = [0, 0]
    seconds = []
    for index in range(n):
        move = random_move(rng)
        pair = visit_pair(seed + index, move=move)
        folder = tmp / f"pair{index}"
        folder.mkdir()
        zoom = local_zoom(np.array(pair.truth["homography"]), 191.5, 159.5)
        scale = pair.truth["mm_per_pixel"]
        a = plan(folder, "a", pair.rgb_a, pair.mask_a, scale)
        b = plan(folder, "b", pair.rgb_b, pair.mask_b, scale / zoom)
        start = time.perf_counter()
        try:
            report, _ = compare_visits(find_visit(a, None, None, []), find_visit(b, None, None, []))
        except AlignmentError as exc:
            print(f"pair {index}: REFUSED ({exc})")
            continue
        seconds.append(time.perf_counter() - start)
        row = next(r for r in report["change"]["classes"] if r["class"] == "vitiligo")
        line = []
        for category, true_px in pair.truth["areas_px"].items():
            error = 100.0 * (row[f"{category}_px"] - true_px) / true_px
            errors.setdefault(category, []).append(error)
            line.append(f"{category} {error:+5.1f}%")
        patches = {p["id"]: p["status"] for p in report["change"]["patches"]}
        for number, truth in pair.truth["patches"].items():
            statuses[0] += patches.get(number) == truth["change"]
            statuses[1] += 1
            if patches.get(number) != truth["change"]:
                print(f"  patch {number}: {patches.get(number)}, truth {truth}")
        print(
            f"pair {index}: rot {move.rotation_deg:+5.1f} zoom {move.scale:.2f} tilt "
            f"{move.tilt[0]:+.2f},{move.tilt[1]:+.2f}: {report['alignment']['method']}, "
            f"{report['alignment']['inliers']} inliers, " + ", ".join(line)
        )
    print("\nchange-map area error vs truth (% of the true area), over", len(seconds), "pairs")
    for category, values in errors.items():
        values = np.abs(values)
        print(f"  {category:10s} median {np.median(values):4.1f} %  max {values.max():4.1f} %")
    print(f"  patch status matches truth: {statuses[0]} of {statuses[1]}")
    print(f"  compare time per pair (384x320, in process): median {np.median(seconds):.2f} s")
    refused = 0
    for index in range(n):
        pair = visit_pair(seed + 500 + index)
        folder = tmp / f"other{index}"
        folder.mkdir()
        a = plan(folder, "a", pair.rgb_a, pair.mask_a, 0.2)
        b = plan(folder, "b", other_scene(seed + 900 + index), pair.mask_a, 0.2)
        try:
            compare_visits(find_visit(a, None, None, []), find_visit(b, None, None, []))
        except AlignmentError:
            refused += 1
    print(f"  different scenes refused: {refused} of {n}")


def smp(n: int, seed: int) -> None:
    density_errors, width_errors = [], []
    for index in range(n):
        density = [50.0, 70.0, 90.0, 110.0, 130.0][index % 5]
        width = [0.06, 0.08, 0.10][index % 3]
        scalp = smp_scalp(seed + index, density_per_cm2=density, strand_width_mm=width)
        rgb = decode_image(encode_jpeg(scalp.rgb, 90), "x.jpg").pixels
        result = measure_density(rgb, scalp.mask > 0, np.zeros(scalp.mask.shape, bool), 0.05)
        if result.dot_density is None:
            print(f"scalp {index}: not measured ({result.warnings})")
            continue
        density_errors.append(100 * (result.dot_density.value / scalp.truth["density_per_cm2"] - 1))
        width_errors.append(100 * (result.dot_size.value / scalp.truth["strand_width_mm"] - 1))
    d, w = np.abs(density_errors), np.abs(width_errors)
    print(
        f"\nSMP density on {len(d)} of {n} dark-haired close-ups: error median {np.median(d):.1f} %"
        f", max {d.max():.1f} %, within 10 %: {int((d <= 10).sum())}"
    )
    print(f"strand width: error median {np.median(w):.1f} %, max {w.max():.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--scalps", type=int, default=20)
    parser.add_argument("--seed", type=int, default=100)
    args = parser.parse_args()
    print(cpu_line())
    with tempfile.TemporaryDirectory() as tmp:
        compare_pairs(args.pairs, args.seed, Path(tmp))
    smp(args.scalps, args.seed)


if __name__ == "__main__":
    main()
