"""int8 sibling and its accuracy guard, precision chosen by the CPU, calibrated confidence, flip
TTA, learned post-processing, and the one resize shared by training and the graph."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dermaseg.errors import InputError
from dermaseg.infer import contract
from dermaseg.infer.postprocess import FRACTIONS, PostProcess, apply_postprocess, read_postprocess
from dermaseg.infer.precision import choose_precision, cpu_flags, int8_instructions
from tests.conftest import run_cli, write_image

X86_NO_VNNI = frozenset(["fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512bw"])
X86_VNNI = X86_NO_VNNI | {"avx512_vnni", "avx_vnni"}


# --- precision choice (torch-free) -------------------------------------------------------------


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx_vnni\n\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp crc32\n")
    assert int8_instructions(cpu_flags(x86)) == ["avx_vnni"]
    assert int8_instructions(cpu_flags(arm)) == ["asimddp"]
    assert cpu_flags(tmp_path / "missing") == frozenset()


def test_auto_picks_int8_only_with_vnni_and_a_sibling(tmp_path: Path) -> None:
    fp32 = tmp_path / "model.onnx"
    fp32.write_bytes(b"fp32")
    no_sibling = choose_precision(fp32, "auto", X86_VNNI)
    assert (no_sibling.precision, no_sibling.path) == ("fp32", fp32)
    assert "no int8 model" in no_sibling.reason
    int8 = contract.int8_sibling(fp32)
    assert int8.name == "model.int8.onnx"
    int8.write_bytes(b"int8")
    without = choose_precision(fp32, "auto", X86_NO_VNNI)
    assert (without.precision, without.path) == ("fp32", fp32)
    assert "no int8 dot-product" in without.reason
    chosen = choose_precision(fp32, "auto", X86_VNNI)
    assert (chosen.precision, chosen.path) == ("int8", int8)
    assert "avx512_vnni" in chosen.reason
    assert choose_precision(fp32, "fp32", X86_VNNI).path == fp32
    assert choose_precision(fp32, "int8", X86_NO_VNNI).path == int8
    int8.unlink()
    with pytest.raises(InputError, match="no int8 model"):
        choose_precision(fp32, "int8", X86_VNNI)
    with pytest.raises(InputError, match="precision 'fast'"):
        choose_precision(fp32, "fast")


# --- learned post-processing (torch-free) ------------------------------------------------------


def test_postprocess_fractions_and_holes_as_export_fits_them() -> None:
    """The rule `export` fits is applied with `infer.postprocess` (the planner's reader)."""
    mask = np.zeros((100, 100), np.uint8)
    mask[10:40, 10:40] = 1
    mask[20:25, 20:25] = 0  # a hole inside class 1
    mask[80, 80] = 1  # a 1-px speck: 0.01 % of the photo
    cleaned = apply_postprocess(mask, PostProcess({1: FRACTIONS[2]}))
    assert cleaned[80, 80] == 0 and cleaned[15, 15] == 1 and cleaned[22, 22] == 0
    filled = apply_postprocess(cleaned, PostProcess({}, True))
    assert (filled[20:25, 20:25] == 1).all() and filled[0, 0] == 0


# --- export: int8 sibling and guard, calibration, TTA, the shared resize -----------------------

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_export_keeps_the_largest_component_only_where_val_has_one_object_a_photo() -> None:
    """nnU-Net's rule: chosen when it raises the class's val Dice, not otherwise."""
    from dermaseg.train.output_fit import ValPass, learn_postprocess

    def passes(second_object_is_real: bool) -> list:
        made = []
        for _ in range(3):
            truth = np.zeros((64, 64), np.uint8)
            truth[10:40, 10:40] = 1
            predicted = truth.copy()
            predicted[50:60, 50:60] = 1  # 2.4 % of the photo: above every fraction tried
            if second_object_is_real:
                truth[50:60, 50:60] = 1
            logits = torch.from_numpy(np.stack([1 - predicted, predicted]).astype(np.float32))
            made.append(ValPass([4 * logits[None]], truth))
        return made

    names = ["background", "lesion"]
    one = learn_postprocess(passes(False), names, 1.0)
    assert one["largest_only"] == ["lesion"] and one["dice_after"]["lesion"] == 1.0
    assert one["dice_before"]["lesion"] < 1.0
    two = learn_postprocess(passes(True), names, 1.0)
    assert two["largest_only"] == [] and two["dice_after"]["lesion"] == 1.0


def test_export_never_learns_a_rule_that_erases_a_photos_only_small_wound() -> None:
    """Specks on one photo are as small as the true wound on another: removing both raises the
    Dice summed over the split (0.989 -> 0.997) but costs the second photo all of its Dice, so
    the per-photo criterion removes no size class; keeping each photo's largest component
    (specks gone, the wound kept) is what it learns instead."""
    from dermaseg.train.output_fit import ValPass, learn_postprocess

    big, small = np.zeros((64, 64), np.uint8), np.zeros((64, 64), np.uint8)
    big[5:45, 5:45] = 1
    small[30:33, 30:33] = 1  # 9 px: the photo's only wound
    specks = big.copy()
    for y, x in ((50, 50), (50, 58), (58, 50), (58, 58)):
        specks[y : y + 3, x : x + 3] = 1  # 9-px false specks

    def made(predicted: np.ndarray, truth: np.ndarray):
        logits = torch.from_numpy(np.stack([1 - predicted, predicted]).astype(np.float32))
        return ValPass([4 * logits[None]], truth)

    rule = learn_postprocess([made(specks, big), made(small, small)], ["background", "wound"], 1)
    assert rule["min_component_fraction"] == {"wound": 0.0}
    assert rule["largest_only"] == ["wound"] and rule["dice_after"]["wound"] == 1.0


def pseudo_labelled(folder: Path, model_path: Path, n: int = 8) -> Path:
    """A mask-folder dataset whose masks are the fp32 model's own masks: fp32 Dice is 1, so any
    int8 error shows as a Dice drop."""
    from dermaseg.datasets.synth import generate_photo
    from dermaseg.infer.session import PlanningModel

    model = PlanningModel(model_path, threads=1)
    for i in range(n):
        photo = generate_photo(50 + i, (128, 96)).rgb
        write_image(folder / "images" / f"p{i}.png", photo)
        write_image(folder / "masks" / f"p{i}.png", model.run(photo).mask)
    (folder / "dataset.yaml").write_text(
        "format: masks\nimages: images\nmasks: masks\nsplit: {seed: 0, val: 0.5, test: 0.0}\n"
    )
    return folder


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny checkpoint behind `tiny_model` (plain export) exported again with --int8,
    --tta flip and a dataset labelled by the plain model."""
    from dermaseg.train.export import export_checkpoint

    folder = tmp_path_factory.mktemp("precision")
    checkpoint = tiny_model.parent / "weights" / "best.safetensors"
    plain = tiny_model
    data = pseudo_labelled(folder / "data", plain)
    out = folder / "model.onnx"
    report = export_checkpoint(
        checkpoint, out, working_size=96, int8=True, data=data, tta="flip", max_dice_drop=1.0
    )
    return {"checkpoint": checkpoint, "plain": plain, "data": data, "out": out, "report": report}


def test_int8_sibling_written_with_the_guard_report(exported: dict) -> None:
    from dermaseg.infer.session import PlanningModel

    report, out = exported["report"], exported["out"]
    sibling = contract.int8_sibling(out)
    assert report.int8["path"] == str(sibling) and sibling.is_file()
    assert report.int8["fixed_classes"]  # classes with support in the val truth
    assert 0.0 <= report.int8["int8_dice"]["mean"] <= 1.0
    dice = report.int8["fp32_dice"]["mean"] - report.int8["int8_dice"]["mean"]
    assert report.int8["dice_drop"] == pytest.approx(dice)
    int8 = PlanningModel(sibling)
    assert int8.precision == "int8" and PlanningModel(out).precision == "fp32"
    ops = {node.op_type for node in __import__("onnx").load(str(sibling)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_guard_refuses_a_bad_int8(exported: dict, tmp_path: Path, monkeypatch) -> None:
    """A quantizer that breaks the model (its head's weights negated) is refused: no file.
    The labels are the plain fp32 model's own masks, so fp32 scores Dice 1."""
    import onnx
    from onnx import numpy_helper

    from dermaseg.errors import DermasegError
    from dermaseg.train import quantize

    real = quantize.quantize_qdq

    def broken(prepared: Path, quantized: Path, reader) -> None:
        real(prepared, quantized, reader)
        model = onnx.load(str(quantized))
        head = [n for n in model.graph.node if n.op_type == "Conv"][-1]
        for init in model.graph.initializer:
            if init.name == head.input[1]:  # argmax becomes argmin
                negated = -numpy_helper.to_array(init)
                init.CopyFrom(numpy_helper.from_array(negated, init.name))
        onnx.save(model, str(quantized))

    monkeypatch.setattr(quantize, "quantize_qdq", broken)
    refused = tmp_path / "model.int8.onnx"
    with pytest.raises(DermasegError, match=r"int8 mean Dice .* no int8 model written"):
        quantize.quantize_model(exported["plain"], refused, exported["data"])
    assert not refused.exists()


def test_calibration_tta_and_postprocess_live_in_the_model(exported: dict) -> None:
    from dermaseg.infer.session import PlanningModel
    from dermaseg.train.export import check_invariants

    model = PlanningModel(exported["out"], threads=1)
    calibration = json.loads(model.metadata[contract.KEY_CALIBRATION])
    assert calibration["method"] == "temperature" and calibration["fitted_on"] == "val"
    assert calibration["temperature"] > 0 and calibration["ece_after"] <= calibration["ece_before"]
    assert json.loads(model.metadata[contract.KEY_TTA]) == {"mode": "flip"}
    rule = json.loads(model.metadata[contract.KEY_POSTPROCESS])
    assert set(rule["min_component_fraction"]) == {"vitiligo", "scar", "thinning"}
    assert isinstance(rule["fill_holes"], bool)
    post, invalid = read_postprocess(model.metadata, model.taxonomy)
    assert invalid is None and post.fill_holes == rule["fill_holes"]
    photo = np.ascontiguousarray(np.random.default_rng(0).integers(0, 255, (70, 111, 3), np.uint8))
    outputs = model.run_batch(photo[None], np.array([0.2], np.float32))
    check_invariants(outputs, np.array([0.2], np.float32), 4)
    assert len(outputs) == 6 and 0.0 <= float(outputs[5][0]) <= 1.0
    assert model.run(photo).tta_disagreement == pytest.approx(float(outputs[5][0]))
    plain = PlanningModel(exported["plain"], threads=1)
    assert json.loads(plain.metadata[contract.KEY_CALIBRATION])["method"] == "none"
    assert plain.run(photo).tta_disagreement is None


def test_onnx_equals_the_checkpoint_on_training_preprocessing(exported: dict) -> None:
    """The graph resizes with the training-time function (`data.resize_photo`): the ONNX mask of
    a photo equals the argmax of the checkpoint's probabilities on the resized photo, resampled
    to the photo's size."""
    from dermaseg.datasets.synth import generate_photo
    from dermaseg.infer.session import PlanningModel
    from dermaseg.train.data import resize_photo
    from dermaseg.train.evaluate import load_model
    from dermaseg.train.planning_graph import pad_to_stride, to_photo_size

    net, _ = load_model(exported["checkpoint"])
    model = PlanningModel(exported["plain"], threads=1)
    for width, height in ((301, 177), (100, 150)):
        photo = generate_photo(3, (width, height)).rgb
        resized, _ = resize_photo(photo, np.zeros(photo.shape[:2], np.uint8), 96)
        pixels = torch.from_numpy(resized).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            logits = net(pad_to_stride(pixels))[:, :, : resized.shape[0], : resized.shape[1]]
        expected = to_photo_size(logits.softmax(1), height, width).argmax(1)
        agreement = (model.run(photo).mask == expected[0].numpy()).mean()
        assert agreement >= 0.999, (width, height, agreement)


def test_plan_and_model_info_say_which_precision_ran(exported: dict, tmp_path: Path) -> None:
    from dermaseg.datasets.synth import generate_photo

    photo = write_image(tmp_path / "p.png", generate_photo(9, (120, 96)).rgb)
    out = tmp_path / "plans"
    result = run_cli(
        "plan", str(photo), "--model", str(exported["out"]), "--out", str(out),
        "--precision", "int8", "--no-marker",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    source = json.loads((out / "p.plan.json").read_text())["source"]
    assert source["precision"] == "int8" and source["precision_reason"] == "--precision int8"
    assert source["name"] == "model.int8.onnx"
    assert "--precision int8" in (out / "p.html").read_text()
    info = run_cli("model", "info", str(exported["out"]), "--precision", "fp32", "--json")
    assert info.returncode == 0, info.stderr
    details = json.loads(info.stdout)
    assert details["precision"] == "fp32" and details["precision_reason"] == "--precision fp32"
    assert details["int8_model"].endswith("model.int8.onnx")
    assert isinstance(details["cpu"]["int8_dot_product"], list)


def test_eval_per_image_worst_first_with_tone_and_hallucinated_area(
    exported: dict, tmp_path: Path
) -> None:
    """`dermaseg eval --per-image`: CSV and JSON, worst first; area error and hallucinated area
    apart; Dice by skin-tone group; the model's learned post-processing applied first."""
    import csv

    per_image = tmp_path / "results.csv"
    result = run_cli(
        "eval", str(exported["out"]), "--data", str(exported["data"]), "--split", "all",
        "--json", "--per-image", str(per_image),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = json.loads(per_image.with_suffix(".json").read_text())
    assert len(rows) == report["photos"] == 8
    scores = [r["fixed_dice"] for r in rows]
    assert scores == sorted(scores)  # worst first
    with per_image.open() as handle:
        table = list(csv.DictReader(handle))
    assert [r["photo"] for r in table] == [r["photo"] for r in rows]
    assert {"fixed_dice", "ita_category", "dice_vitiligo", "hallucinated_area_pct_scar"} <= set(
        table[0]
    )
    for name, values in report["per_class"].items():
        assert "hallucinated_area_pct" in values and "area_error_pct" in values
        assert values["photos_with_class"] + values["photos_without_class"] == 8, name
    assert sum(g["photos"] for g in report["by_skin_tone"].values()) == 8
    rule = exported["report"].postprocess
    expected = {k: rule[k] for k in ("min_component_fraction", "largest_only", "fill_holes")}
    assert report["postprocess"] in (expected, None)  # None: the rule changes nothing
    assert report["fixed_classes"] and report["boundary_tolerance"].endswith("diagonal")
