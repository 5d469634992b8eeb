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
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
from cpu_report import cpu_line

from dermaseg.datasets.dataset import Dataset
from dermaseg.infer.analysis import Analysis, MadePlan
from dermaseg.infer.batch import BatchPlanner, CalibrationSettings, calibrate
from dermaseg.infer.inputs import read_photo
from dermaseg.infer.procedure_plan import ProcedureOptions, skin_target
from dermaseg.infer.rescale import to_photo_mask
from dermaseg.infer.review_flags import THRESHOLDS, Thresholds
from dermaseg.infer.session import PlanningModel

SETS = ("pad-ufes20-lesions", "fuseg-wounds", "figaro1k-hair")
BAD, GOOD = 0.5, 0.8


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred > 0, truth > 0
    total = int(p.sum() + t.sum())
    return 1.0 if total == 0 else 2.0 * int((p & t).sum()) / total


def make_plan(planner: BatchPlanner, path: Path, cache: Path | None) -> MadePlan:
    """`planner.make_plan(path)`, with the model's outputs (mask, confidence, TTA disagreement)
    kept in `cache` so later runs re-plan and re-review without running the model again."""
    if cache is None:
        return planner.make_plan(path)
    photo = read_photo(path, min_long_side=planner._analysis_long_side())
    calibration = calibrate(photo, planner.calibration)
    stored = cache / f"{path.stem}.npz"
    if stored.is_file():
        with np.load(stored) as data:
            mask, confidence = data["mask"], data["confidence"]
            disagreement = data.get("disagreement")
        analysis = Analysis(photo, mask, confidence, calibration, planner.source, disagreement)
    else:
        analysis = planner._segment(photo, calibration, None)
        arrays = {"mask": analysis.mask, "confidence": analysis.confidence}
        if analysis.disagreement is not None:
            arrays["disagreement"] = analysis.disagreement
        cache.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(stored, **arrays)
    return planner.plan_segmented(analysis)


def run_set(
    folder: Path, model_path: Path, split: str, limit: int | None, cache: Path | None = None
) -> list[dict]:
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
        if cache is not None:  # one folder per model: its outputs, not another model's
            cache = cache / planner.source.sha256[:12]
        for record in records:
            truth = dataset.load(record).mask
            made = make_plan(planner, record.image_path, cache)
            plan = made.plan
            pred = to_photo_mask(made.analysis.mask, made.analysis.scale)
            treated = [p for p in plan.patches if p.treatable]
            target = (
                plan.procedure.pigment_target
                if plan.procedure
                else skin_target(plan, [])  # a model whose classes no procedure treats
            )
            rings = [p.tone for p in treated if p.tone is not None and p.tone.surround]
            rows.append(
                {
                    "set": folder.name,
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
                    "patches": patch_rows(made, truth),
                    "withheld": None if target is None else target.withheld,
                    "swatch": target is not None and target.tone is not None,
                }
            )
    return rows


def patch_rows(made: MadePlan, truth: np.ndarray) -> list[tuple[int, float | None, bool]]:
    """(area px, ring skin share, whether it overlaps the hand-drawn truth) of each treated
    patch, in the analysed pixels: a patch that overlaps no truth is a false patch, the thing
    `not-skin` is there to catch (a patch on a date stamp, a poster, a drape)."""
    height, width = made.analysis.mask.shape
    if truth.shape != (height, width):
        truth = cv2.resize(truth, (width, height), interpolation=cv2.INTER_NEAREST)
    rows = []
    for patch, region in zip(made.plan.patches, made.regions, strict=True):
        if not patch.treatable:
            continue
        x, y, w, h = region.bbox
        real = bool(np.any(truth[y : y + h, x : x + w][region.pixels] > 0))
        share = None if patch.tone is None else patch.tone.skin_share
        rows.append((region.area_px, share, real))
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


def reason_table(rows: list[dict], t: Thresholds) -> None:
    bad = [r for r in rows if r["dice"] < BAD]
    good = [r for r in rows if r["dice"] >= GOOD]
    counts = {
        k: Counter(c for r in g for c in r["reasons"]) for k, g in (("bad", bad), ("good", good))
    }
    codes = sorted(set(counts["bad"]) | set(counts["good"]))
    alone = {
        k: Counter(r["reasons"][0] for r in g if len(r["reasons"]) == 1)
        for k, g in (("bad", bad), ("good", good))
    }
    print(f"\n{'reason':<20}{'Dice<0.5':>10}{'Dice>=0.8':>11}{'alone<0.5':>11}{'alone>=0.8':>12}")
    for code in codes:
        print(
            f"{code:<20}{counts['bad'][code]:>10}{counts['good'][code]:>11}"
            f"{alone['bad'][code]:>11}{alone['good'][code]:>12}"
        )
    print(
        "alone: plans where it is the only reason (the plans it alone sends to review). "
        f"Dice<0.5: {len(bad)} plans, Dice>=0.8: {len(good)}."
    )
    shares = [p for r in rows for p in r["patches"] if p[1] is not None]
    off = [p for p in shares if p[1] < t.min_ring_skin_share]
    false = sum(not real for _, _, real in off)
    print(
        f"not-skin, per treated patch: {len(off)} patches under a {t.min_ring_skin_share:g} skin "
        f"ring, {false} of them false patches (no overlap with the truth); all treated patches: "
        f"{sum(len(r['patches']) for r in rows)}, false: "
        f"{sum(not p[2] for r in rows for p in r['patches'])}"
    )


def tune(rows: list[dict]) -> Thresholds | None:
    """The thresholds under which every set (rows[i]["set"]) meets both goals, with the highest
    sum over sets of recall minus false-flag rate; a set missing a goal costs 1 (so the best
    setting misses as few as it can). Fit it on the val split, report the test split."""
    groups = {}
    for row in rows:
        groups.setdefault(row["set"], []).append(row)
    best, best_score = None, -1e9
    for conf, unc, specks in itertools.product(
        np.arange(0.60, 0.96, 0.01), np.arange(0.05, 0.8, 0.025), (3, 5, 8, 12, 20, 40, 10**6)
    ):
        t = dataclasses.replace(
            THRESHOLDS,
            min_confidence=round(float(conf), 3),
            max_uncertain_share=round(float(unc), 3),
            max_specks=specks,
        )
        score = 0.0
        for group in groups.values():
            bad = [r for r in group if r["dice"] < BAD]
            good = [r for r in group if r["dice"] >= GOOD]
            recall = np.mean([flagged(r, t) for r in bad]) if bad else 1.0
            false = np.mean([flagged(r, t) for r in good]) if good else 0.0
            score += recall - false - (0 if recall >= 0.8 and false <= 0.25 else 1.0)
        if score > best_score + 1e-9:
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
    parser.add_argument(
        "--rows",
        type=Path,
        nargs="*",
        default=[],
        help="summarise (and --tune on) rows earlier runs wrote with --dump, planning nothing",
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=None,
        help="keep the model's outputs per photo here (CACHE/<set>-<split>/) and reuse them",
    )
    args = parser.parse_args()
    print(cpu_line())
    all_rows: list[dict] = []
    lines = []
    for dump in args.rows:  # rows an earlier run dumped: no planning
        rows = json.loads(dump.read_text())
        all_rows += rows
        for name in sorted({r["set"] for r in rows}):
            lines.append(summary(name, [r for r in rows if r["set"] == name], THRESHOLDS))
    for name in args.sets.split(",") if not args.rows else []:
        model = args.models / name / "model.onnx"
        if not model.is_file():
            print(f"{name}: no model at {model}, skipped")
            continue
        start = time.perf_counter()
        cache = None if args.cache is None else args.cache / f"{name}-{args.split}"
        rows = run_set(args.realdata / name, model, args.split, args.limit, cache)
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
    treating = [r for r in all_rows if r["treated"]]
    neither = [r["id"] for r in treating if not r["swatch"] and r["withheld"] is None]
    print(
        f"pigment rings: of {len(treating)} plans treating patches, "
        f"{sum(r['swatch'] for r in treating)} offer a swatch of skin-model pixels only (100 % "
        f"skin, goal >= 90 %), {sum(r['withheld'] is not None for r in treating)} withhold it "
        f"with a reason, {len(neither)} neither (goal 0) {' '.join(neither)}"
    )
    reason_table(all_rows, THRESHOLDS)
    if args.dump is not None:
        args.dump.write_text(json.dumps(all_rows, indent=1))
    if args.tune and all_rows:
        best = tune(all_rows)
        print(
            f"\ntuned on {'the rows given' if args.rows else args.split}: "
            f"min_confidence={best.min_confidence}, "
            f"max_uncertain_share={best.max_uncertain_share}, max_specks={best.max_specks}"
        )
        for name in sorted({r["set"] for r in all_rows}):
            print(summary(f"{name} (tuned)", [r for r in all_rows if r["set"] == name], best))


if __name__ == "__main__":
    main()
