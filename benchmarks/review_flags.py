"""Does `needs_review` find the bad plans? Real photos, real-photo models, the plan's own review.

    python benchmarks/review_flags.py [--realdata ../shared/realdata] [--models /work/models]
                                      [--split test] [--sets pad-ufes20-lesions,...] [--tune]

For each shared real set with a model at MODELS/<set>/model.onnx, every photo of the split is
planned exactly as `dermaseg plan` plans it (no marker in these photos: uncalibrated), then
compared with its hand-drawn mask. Prints, side by side per set and over all sets:
  - the share of photos with Dice < 0.5 that needs_review flags (goal >= 80 %) and of photos
    with Dice >= 0.8 that it flags (goal <= 25 %); how often each reason fires in each group;
  - how many treated patches are under their plan's minimum patch size (goal: none);
  - the pigment rings: kept pixels that the skin model calls skin (the planner keeps only those,
    so this checks the code path), the share of each ring that was skin, swatches withheld.
With --tune (run it on --split val), the thresholds of the tunable reasons are searched on the
measures the plans recorded and the best setting meeting both goals is printed.
Dice is of foreground (any class) vs background; a photo with neither has Dice 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import platform
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from dermaseg.datasets.dataset import Dataset
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
from dermaseg.infer.procedure_plan import ProcedureOptions, skin_target
from dermaseg.infer.review_flags import THRESHOLDS, Thresholds
from dermaseg.infer.session import PlanningModel

SETS = ("pad-ufes20-lesions", "fuseg-wounds", "figaro1k-hair")
BAD, GOOD = 0.5, 0.8


def lscpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return platform.processor()
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    flags = fields.get("Flags", "").split()
    wanted = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "fma") if f in flags]
    return f"{fields.get('Model name', '?').strip()} (flags: {' '.join(wanted)})"


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred > 0, truth > 0
    total = int(p.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def run_set(folder: Path, model_path: Path, split: str, limit: int | None) -> list[dict]:
    dataset = Dataset.open(folder)
    model = PlanningModel(model_path)
    records = dataset.split_records(split)[:limit]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        planner = BatchPlanner(
            Path(tmp),
            model=model,
            calibration=CalibrationSettings(detect_marker=False),
            procedures=ProcedureOptions(),
        )
        for record in records:
            truth = dataset.load(record).mask
            made = planner.make_plan(record.image_path)
            plan = made.plan
            scale = plan.photo.analysis_scale
            pred = made.analysis.mask
            if scale > 1:
                pred = np.repeat(np.repeat(pred, scale, 0), scale, 1)
            treated = [p for p in plan.patches if p.treatable]
            target = (
                plan.procedure.pigment_target
                if plan.procedure
                else skin_target(plan, [])  # a model whose classes no procedure treats
            )
            rings = [p.tone for p in treated if p.tone is not None and p.tone.surround]
            rows.append(
                {
                    "id": record.id,
                    "dice": dice(pred, truth),
                    "needs_review": plan.review.needs_review,
                    "reasons": [r.code for r in plan.review.reasons if r.sets_review],
                    "measures": dict(plan.review.measures),
                    "under_minimum": sum(
                        p.area_px < plan.treatable.min_patch_area_px for p in treated
                    ),
                    "treated": len(treated),
                    "ring_share": [t.skin_share for t in rings if t.skin_share is not None],
                    "withheld": None if target is None else target.withheld,
                    "swatch": target is not None and target.tone is not None,
                }
            )
    return rows


def flagged(row: dict, t: Thresholds) -> bool:
    """needs_review recomputed from the recorded measures under thresholds `t` (reasons whose
    thresholds are not tuned are taken as the plan recorded them)."""
    m = row["measures"]
    fixed = set(row["reasons"]) - {"low-confidence", "uncertain-pixels", "many-specks"}
    if fixed:
        return True
    if m.get("confidence") is not None and m["confidence"] < t.min_confidence:
        return True
    if m.get("uncertain_share") is not None and m["uncertain_share"] > t.max_uncertain_share:
        return True
    return m.get("specks", 0) > t.max_specks


def summary(name: str, rows: list[dict], t: Thresholds) -> str:
    bad = [r for r in rows if r["dice"] < BAD]
    good = [r for r in rows if r["dice"] >= GOOD]

    def share(group: list[dict]) -> str:
        if not group:
            return "   -  (0)"
        n = sum(flagged(r, t) for r in group)
        return f"{100 * n / len(group):5.1f}% ({n}/{len(group)})"

    under = sum(r["under_minimum"] for r in rows)
    rings = [s for r in rows for s in r["ring_share"]]
    swatches = sum(r["swatch"] for r in rows)
    withheld = sum(r["withheld"] is not None for r in rows)
    mean_dice = np.mean([r["dice"] for r in rows]) if rows else float("nan")
    return (
        f"{name:<20}{len(rows):>5}{mean_dice:>7.3f}  {share(bad):>18}  {share(good):>18}"
        f"{under:>8}{swatches:>7}{withheld:>6}"
        f"  {np.median(rings) if rings else float('nan'):>6.2f}"
        f"  {np.percentile(rings, 10) if rings else float('nan'):>6.2f}"
    )


def reason_table(rows: list[dict]) -> None:
    bad = [r for r in rows if r["dice"] < BAD]
    good = [r for r in rows if r["dice"] >= GOOD]
    counts = {
        k: Counter(c for r in g for c in r["reasons"]) for k, g in (("bad", bad), ("good", good))
    }
    codes = sorted(set(counts["bad"]) | set(counts["good"]))
    print(f"\n{'reason':<20}{'Dice<0.5':>10}{'Dice>=0.8':>11}")
    for code in codes:
        print(f"{code:<20}{counts['bad'][code]:>10}{counts['good'][code]:>11}")


def tune(rows: list[dict]) -> Thresholds | None:
    """The thresholds meeting both goals with the highest recall minus false-flag rate."""
    bad = [r for r in rows if r["dice"] < BAD]
    good = [r for r in rows if r["dice"] >= GOOD]
    best, best_score = None, -9.0
    for conf, unc, specks in itertools.product(
        np.arange(0.60, 0.96, 0.01), np.arange(0.05, 0.8, 0.025), (3, 5, 8, 12, 20, 40, 10**6)
    ):
        t = dataclasses.replace(
            THRESHOLDS,
            min_confidence=round(float(conf), 3),
            max_uncertain_share=round(float(unc), 3),
            max_specks=specks,
        )
        recall = np.mean([flagged(r, t) for r in bad]) if bad else 1.0
        false = np.mean([flagged(r, t) for r in good]) if good else 0.0
        score = recall - false - (0 if recall >= 0.8 and false <= 0.25 else 1.0)
        if score > best_score:
            best, best_score = t, score
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realdata", type=Path, default=Path("../shared/realdata"))
    parser.add_argument("--models", type=Path, default=Path("/work/models"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--tune", action="store_true")
    parser.add_argument("--dump", type=Path, default=None, help="write every photo's row (JSON)")
    args = parser.parse_args()
    print(f"CPU: {lscpu()}")
    all_rows: list[dict] = []
    lines = []
    for name in args.sets.split(","):
        model = args.models / name / "model.onnx"
        if not model.is_file():
            print(f"{name}: no model at {model}, skipped")
            continue
        start = time.perf_counter()
        rows = run_set(args.realdata / name, model, args.split, args.limit)
        print(f"{name}: {len(rows)} {args.split} photos in {time.perf_counter() - start:.0f} s")
        all_rows += rows
        lines.append(summary(name, rows, THRESHOLDS))
    header = (
        f"\n{'set':<20}{'n':>5}{'Dice':>7}  {'flagged Dice<0.5':>18}  {'flagged Dice>=0.8':>18}"
        f"{'<min':>8}{'swatch':>7}{'nosw':>6}  {'ring50':>6}  {'ring10':>6}"
    )
    print(header)
    for line in lines:
        print(line)
    if len(lines) > 1:
        print(summary("all", all_rows, THRESHOLDS))
    print(
        "\n<min: treated patches under their plan's minimum (goal 0). swatch / nosw: plans with "
        "a skin swatch / with it withheld and a reason. A swatch is made only of ring pixels the "
        "photo's skin model calls skin (tone.patch_tone keeps ring & skin), so its kept pixels "
        "are 100 % skin by that model. ring50 / ring10: median / 10th percentile over treated "
        "patches of the share of their ring (hair and marker aside) that is skin."
    )
    reason_table(all_rows)
    if args.dump is not None:
        args.dump.write_text(json.dumps(all_rows, indent=1))
    if args.tune and all_rows:
        best = tune(all_rows)
        print(
            f"\ntuned on {args.split}: min_confidence={best.min_confidence}, "
            f"max_uncertain_share={best.max_uncertain_share}, max_specks={best.max_specks}"
        )
        print(summary("all (tuned)", all_rows, best))


if __name__ == "__main__":
    main()
