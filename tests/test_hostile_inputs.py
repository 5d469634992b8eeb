"""A corpus of hostile and odd inputs, given to `data check`, `plan`, `train`, `eval`, `export`.

Each bad input must give a one-line error naming its file, a non-zero exit, no traceback, no
half-written output, and the rest of its batch done; odd but valid inputs must be handled.
`data check` and `plan` run as real subprocesses over the whole corpus at once (one batch each);
configs, checkpoints and models run in-process through `dermaseg.cli.main`, where a traceback
would be an exception escaping `main`.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from dermaseg.cli import main
from dermaseg.datasets.images import load_image
from dermaseg.errors import InputError, shown
from dermaseg.infer.schema import Plan
from tests.conftest import make_mask_dataset, run_cli, write_image
from tests.hostile_corpus import (
    NON_UTF8_NAME,
    MaskCase,
    PhotoCase,
    fake_planning_model,
    mask_cases,
    onnx_reading_outside,
    photo_cases,
    pickle_that_touches,
    smooth_rgb,
    torch_zip_that_touches,
    write_mask,
)

PHOTOS = photo_cases()
MASKS = mask_cases()
# a folder argument is a folder of photos; the non-UTF-8 name has tests of its own
PLAN_FILES = [c for c in PHOTOS if c.name not in ("folder.jpg", NON_UTF8_NAME)]
TRACEBACK = "Traceback"
ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Corpus:
    photos: Path  # every photo case but the non-UTF-8 name
    odd: Path  # the photo with a non-UTF-8 name (plan batches: see the xfail below)
    dataset: Path  # a mask-folder dataset: photo cases, mask cases and good photos
    masks: Path  # for `plan --mask`: a valid mask per photo case, the bad mask per mask case
    good: list[str]  # stems of the good photos in the dataset


def _good_mask_for(case: PhotoCase, path: Path) -> Path:
    width, height = case.size or (48, 40)
    return write_mask(path, width, height)


def build_corpus(root: Path) -> Corpus:
    """Write the whole corpus under `root`."""
    photos, dataset, masks, odd = root / "photos", root / "ds", root / "masks", root / "odd"
    for folder in (photos, dataset / "images", dataset / "masks", masks, odd):
        folder.mkdir(parents=True)
    for case in PHOTOS:
        case.write((odd if case.name == NON_UTF8_NAME else photos) / case.name)
        _good_mask_for(case, masks / f"{case.name}.png")
        if case.in_dataset:
            case.write(dataset / "images" / case.name)
            _good_mask_for(case, dataset / "masks" / f"{Path(case.name).stem}.png")
    for case in MASKS:
        case.photo(photos / f"{case.name}.jpg")
        case.write(masks / f"{case.name}.png")
        case.photo(dataset / "images" / f"{case.name}.jpg")
        case.write(dataset / "masks" / f"{case.name}.png")
    good = [f"good-{i}" for i in range(3)]
    for i, stem in enumerate(good):
        write_image(dataset / "images" / f"{stem}.png", smooth_rgb(40, 48, seed=i))
        write_mask(dataset / "masks" / f"{stem}.png", 48, 40)
    return Corpus(photos, odd, dataset, masks, good)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("hostile"))


def assert_one_line(message: str, path: Path | str, fragment: str) -> None:
    """A user-facing error: one line, naming the file, containing `fragment`."""
    assert "\n" not in message.strip(), message
    assert shown(path) in message, (path, message)
    assert fragment in message, (fragment, message)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob(".*.tmp")]


# ---- the image loader --------------------------------------------------------------------------


@pytest.mark.parametrize("case", PHOTOS, ids=lambda c: ascii(c.name))
def test_loader(corpus: Corpus, case: PhotoCase) -> None:
    path = (corpus.odd if case.name == NON_UTF8_NAME else corpus.photos) / case.name
    if case.error is not None:
        with pytest.raises(InputError) as info:
            load_image(path)
        assert_one_line(str(info.value), path, case.error)
        return
    rgb = load_image(path)
    assert rgb.dtype == np.uint8 and rgb.shape == (case.size[1], case.size[0], 3)


def test_valid_odd_photos_keep_their_content(corpus: Corpus) -> None:
    """The odd valid formats decode to the right pixels, not just the right shape."""
    reference = smooth_rgb(40, 48).astype(int)
    for name, tolerance in (("photo-webp.webp", 8), ("photo-bmp.bmp", 0), ("cmyk-tif.tif", 2)):
        assert np.abs(load_image(corpus.photos / name).astype(int) - reference).mean() <= tolerance
    rotated = load_image(corpus.photos / "exif-rotated.jpg").astype(int)
    assert np.abs(rotated - np.rot90(reference, k=-1)).mean() < 6
    gray = load_image(corpus.photos / "gray16.png")
    assert gray[..., 0].max() > 200 and np.array_equal(gray[..., 0], gray[..., 2])
    keyed = load_image(corpus.photos / "palette-transparency.png")
    assert (keyed == 255).all(axis=2).any()  # the transparent colour is composited over white


# ---- data check over the whole corpus in one batch ---------------------------------------------


@pytest.fixture(scope="module")
def check_run(corpus: Corpus) -> tuple[int, dict, str]:
    result = run_cli("data", "check", str(corpus.dataset), "--json")
    assert TRACEBACK not in result.stderr and "Warning" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout), result.stderr


def _problems_for(report: dict, path: Path) -> list[dict]:
    return [p for p in report["problems"] if p["path"] == str(path)]


def test_data_check_batch_exit_and_good_files(corpus: Corpus, check_run) -> None:
    code, report, _ = check_run
    assert code == 1
    for stem in corpus.good:
        assert not _problems_for(report, corpus.dataset / "images" / f"{stem}.png")
    bad = sum(c.error is not None for c in PHOTOS if c.in_dataset) + len(MASKS)
    assert report["errors"] >= bad


@pytest.mark.parametrize("case", [c for c in PHOTOS if c.in_dataset], ids=lambda c: ascii(c.name))
def test_data_check_photo(corpus: Corpus, check_run, case: PhotoCase) -> None:
    _, report, _ = check_run
    path = corpus.dataset / "images" / case.name
    problems = _problems_for(report, path)
    errors = [p for p in problems if p["severity"] == "error"]
    if case.error is not None:
        assert [p["kind"] for p in errors] == ["unreadable-image"], problems
        assert_one_line(f"{shown(path)}: {errors[0]['message']}", path, case.error)
    elif min(case.size) < 32:  # valid, but too small to train on: a dataset rule
        assert [p["kind"] for p in errors] == ["tiny-image"], problems
    else:
        assert not errors, problems
    if case.name == "multipage.tif":
        assert [p["kind"] for p in problems] == ["multi-frame"]


@pytest.mark.parametrize("case", MASKS, ids=lambda c: c.name)
def test_data_check_mask(corpus: Corpus, check_run, case: MaskCase) -> None:
    _, report, _ = check_run
    path = corpus.dataset / "masks" / f"{case.name}.png"
    errors = [p for p in _problems_for(report, path) if p["severity"] == "error"]
    assert [p["kind"] for p in errors] == ["bad-mask"], report["problems"]
    assert_one_line(f"{path}: {errors[0]['message']}", path, case.error)


def test_data_check_human_report_names_a_non_utf8_file(corpus: Corpus) -> None:
    result = run_cli("data", "check", str(corpus.dataset))
    assert result.returncode == 1 and TRACEBACK not in result.stderr
    # the problems table wraps long paths onto a second line of their cell
    assert "FAILED" in result.stdout and "empty file (0 bytes)" in result.stdout


# ---- plan over the whole corpus in one batch: from masks, and with a model ---------------------


def _plan_outputs(out: Path, stem: str) -> list[Path]:
    return [p for p in out.glob("*") if p.name.startswith(f"{stem}.")]


@pytest.fixture(scope="module")
def mask_plan_run(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("plan-mask") / "out"
    photos = [corpus.photos / c.name for c in PLAN_FILES]
    masks = [corpus.masks / f"{c.name}.png" for c in PLAN_FILES]
    photos += [corpus.photos / f"{c.name}.jpg" for c in MASKS]
    masks += [corpus.masks / f"{c.name}.png" for c in MASKS]
    args = [str(p) for p in photos]
    for mask in masks:
        args += ["--mask", str(mask)]
    result = run_cli("plan", *args, "--no-marker", "-o", str(out), "--json")
    assert TRACEBACK not in result.stderr and "Warning" not in result.stderr, result.stderr
    return result, json.loads(result.stdout), out


@pytest.fixture(scope="module")
def model_plan_run(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("plan-model")
    model = fake_planning_model(folder / "fake.onnx")
    out = folder / "out"
    photos = [str(corpus.photos), str(corpus.photos / "animated.gif")]
    result = run_cli("plan", *photos, "--model", str(model), "--no-marker", "-o", str(out))
    assert TRACEBACK not in result.stderr, result.stderr
    return result, out


def _check_planned_or_failed(summary: dict, out: Path, path: Path, case_error: str | None, size):
    failed = {f["photo"]: f["error"] for f in summary["failed"]}
    planned = {p["photo"]: p for p in summary["planned"]}
    stem = path.stem
    if case_error is not None:
        assert str(path) in failed, (path, sorted(failed))
        assert_one_line(failed[str(path)], path, case_error)
        assert not _plan_outputs(out, stem)  # nothing half-written for a failed photo
        return
    assert str(path) in planned, failed.get(str(path))
    plan = Plan.model_validate_json((out / f"{stem}.plan.json").read_text(encoding="utf-8"))
    assert (plan.photo.width, plan.photo.height) == size
    assert sum(c.area_px for c in plan.classes) == size[0] * size[1]


@pytest.mark.parametrize("case", PLAN_FILES, ids=lambda c: ascii(c.name))
def test_plan_photo_with_mask(mask_plan_run, corpus: Corpus, case: PhotoCase) -> None:
    result, summary, out = mask_plan_run
    assert result.returncode == 1
    _check_planned_or_failed(summary, out, corpus.photos / case.name, case.planned_error, case.size)


@pytest.mark.parametrize("case", MASKS, ids=lambda c: c.name)
def test_plan_bad_mask(mask_plan_run, corpus: Corpus, case: MaskCase) -> None:
    _, summary, out = mask_plan_run
    photo = corpus.photos / f"{case.name}.jpg"
    failed = {f["photo"]: f["error"] for f in summary["failed"]}
    mask = corpus.masks / f"{case.name}.png"
    assert_one_line(failed[str(photo)], mask, case.error)
    assert not _plan_outputs(out, photo.stem)


def test_plan_batch_leaves_no_temp_files(mask_plan_run, model_plan_run) -> None:
    for out in (mask_plan_run[2], model_plan_run[1]):
        assert no_temp_files(out)
        for path in out.glob("*.json"):
            json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", PLAN_FILES, ids=lambda c: ascii(c.name))
def test_plan_photo_with_model(model_plan_run, corpus: Corpus, case: PhotoCase) -> None:
    result, out = model_plan_run
    assert result.returncode == 1
    path = corpus.photos / case.name
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    mine = [line for line in lines if f"{shown(path)}:" in line]
    if case.planned_error is not None:
        assert len(mine) == 1, lines
        assert_one_line(mine[0], path, case.planned_error)
        assert not _plan_outputs(out, path.stem)
    else:
        assert not mine, mine
        plan = Plan.model_validate_json((out / f"{path.stem}.plan.json").read_text("utf-8"))
        assert (plan.photo.width, plan.photo.height) == case.size


def test_plan_non_utf8_name_alone(corpus: Corpus, tmp_path: Path) -> None:
    """Outputs keep the file's bytes in their names; the JSON and HTML show U+FFFD instead."""
    photo, mask = corpus.odd / NON_UTF8_NAME, corpus.masks / f"{NON_UTF8_NAME}.png"
    out = tmp_path / "out"
    result = run_cli("plan", str(photo), "--mask", str(mask), "--no-marker", "-o", str(out))
    assert result.returncode == 0, result.stderr
    plan = Plan.model_validate_json((out / f"{photo.stem}.plan.json").read_text("utf-8"))
    assert plan.photo.name == "caf\ufffd-\ufffd.png" and (plan.photo.width, plan.photo.height) == (
        48,
        40,
    )
    (out / f"{photo.stem}.html").read_text("utf-8")  # valid UTF-8
    assert no_temp_files(out)


def test_plan_batch_with_a_non_utf8_name(corpus: Corpus, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / NON_UTF8_NAME).write_bytes((corpus.odd / NON_UTF8_NAME).read_bytes())
    write_image(folder / "plain.png", smooth_rgb(40, 48))
    model = fake_planning_model(tmp_path / "fake.onnx")
    result = run_cli(
        "plan", str(folder), "-m", str(model), "--no-marker", "-o", str(tmp_path / "o")
    )
    assert TRACEBACK not in result.stderr and result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "index.html").is_file()


def test_plan_batch_survives_any_exception_of_one_photo(tmp_path: Path, monkeypatch) -> None:
    import cv2

    from dermaseg.infer import batch

    photos = [write_image(tmp_path / f"p{i}.png", smooth_rgb(40, 48, seed=i)) for i in range(3)]
    masks = [write_mask(tmp_path / f"m{i}.png", 48, 40) for i in range(3)]
    real_plan_from_mask = batch.plan_from_mask

    def plan_from_mask(rgb, *args, **kwargs):
        if kwargs["photo"].name == "p1.png":
            raise cv2.error("OpenCV(5.0.0) arithm.cpp: Sizes of input arguments do not match")
        return real_plan_from_mask(rgb, *args, **kwargs)

    monkeypatch.setattr(batch, "plan_from_mask", plan_from_mask)
    planner = batch.BatchPlanner(
        tmp_path / "out", calibration=batch.CalibrationSettings(detect_marker=False)
    )
    result = planner.run(photos, masks)
    assert [p.path.name for p in result.planned] == ["p0.png", "p2.png"]
    assert len(result.failed) == 1 and "\n" not in result.failed[0][1]


# ---- in-process commands: configs, checkpoints, models -----------------------------------------


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run `dermaseg ARGS` in this process; any exception escaping main fails the test."""
    monkeypatch.setattr(sys, "argv", ["dermaseg", *args])
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_cli_error(code: int, err: str, path: Path | str, fragment: str, exit_code: int = 2):
    assert code == exit_code, err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert_one_line(err, path, fragment)


DEEP = "[" * 5000 + "]" * 5000
LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 9)).replace(
    "*l0", "lol"
)


def dataset_yaml_cases(marker: Path) -> list[tuple[str, bytes, str]]:
    """(name, dataset.yaml bytes, error fragment)."""
    return [
        ("malformed", b"format: [masks\n", "invalid YAML"),
        (
            "python-apply",
            f"format: !!python/object/apply:os.system ['touch {marker}']\n".encode(),
            "invalid YAML",
        ),
        (
            "python-new",
            f'root: !!python/object/new:builtins.open ["{marker}", "w"]\n'.encode(),
            "invalid YAML",
        ),
        ("top-level-list", b"- masks\n- images\n", "expected a mapping of settings, got list"),
        ("scalar", b"42\n", "expected a mapping of settings, got int"),
        ("non-utf8", b"images: caf\xe9\n", "not a UTF-8 text file"),
        ("deeply-nested", f"classes: {DEEP}\n".encode(), "nested too deeply"),
        ("billion-laughs", LAUGHS.encode(), "unknown key"),
        ("wrong-type-max-pixels", b"max_pixels: lots\n", "max_pixels"),
        ("wrong-type-split", b"split: 5\n", "split"),
        ("wrong-type-flag", b"allow_outside_root: maybe\n", "allow_outside_root"),
        ("bad-fractions", b"split: {val: 0.6, test: 0.5}\n", "leaves nothing to train on"),
        ("value-out-of-range", b"value_map: {300: vitiligo}\n", "not a mask value"),
        ("unknown-class", b"value_map: {255: freckle}\n", "value_map"),
        ("bad-format", b"format: xml\n", "format"),
        ("typo", b"fromat: masks\n", "did you mean 'format'"),
    ]


def test_dataset_yaml_cases(tmp_path: Path, monkeypatch, capsys) -> None:
    marker = tmp_path / "MARKER"
    for name, text, fragment in dataset_yaml_cases(marker):
        root = make_mask_dataset(tmp_path / name, n=2)
        (root / "dataset.yaml").write_bytes(text)
        code, out, err = run_main(monkeypatch, capsys, "data", "check", str(root), "--json")
        assert_cli_error(code, err, root / "dataset.yaml", fragment)
        assert out == ""
    assert not marker.exists()


def _tiny_config(data: Path, runs: Path, extra: str = "") -> str:
    return (
        f"name: tiny\ndata: {data}\nruns_dir: {runs}\n"
        "model: {encoder_weights: null, decoder_channels: [16, 16, 16, 16, 8]}\n"
        "input: {size: 64}\ntrain: {epochs: 1, batch_size: 2, workers: 0, overlay_every: 0}\n"
        f"{extra}"
    )


def train_config_cases(data: Path, runs: Path, marker: Path) -> list[tuple[str, bytes, str]]:
    """(name, config file bytes, error fragment): all fail before any training."""
    good = _tiny_config(data, runs)
    return [
        ("malformed", b"data: [unclosed\n", "invalid YAML"),
        (
            "python-apply",
            f"data: !!python/object/apply:os.system ['touch {marker}']\n".encode(),
            "invalid YAML",
        ),
        ("python-name", b"data: !!python/name:os.system\n", "invalid YAML"),
        ("top-level-list", b"- data\n", "expected a mapping of settings, got list"),
        ("non-utf8", b"data: caf\xe9\n", "not a UTF-8 text file"),
        (
            "deeply-nested",
            f"data: x\naugment: {{pipeline: {{t: {DEEP}}}}}\n".encode(),
            "nested too deeply",
        ),
        ("empty", b"", "data: Field required"),
        ("wrong-type-epochs", (good + "optim: {lr: fast}\n").encode(), "optim.lr"),
        ("wrong-type-section", f"data: {data}\nmodel: 5\n".encode(), "model"),
        ("wrong-type-size", f"data: {data}\ninput: {{size: 65}}\n".encode(), "multiple of 32"),
        ("negative", f"data: {data}\ntrain: {{epochs: -3}}\n".encode(), "train.epochs"),
        ("bad-name", f"data: {data}\nname: ../../etc\n".encode(), "name"),
        ("typo", f"data: {data}\ntrian: {{}}\n".encode(), "did you mean 'train'"),
        ("missing-data", _tiny_config(runs / "nowhere", runs).encode(), "dataset not found"),
    ]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mask_dataset(tmp_path_factory.mktemp("tiny") / "ds", n=8, size=(64, 48))


def test_train_config_cases(tmp_path: Path, tiny_data: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("torch")
    runs, marker = tmp_path / "runs", tmp_path / "MARKER"
    for name, text, fragment in train_config_cases(tiny_data, runs, marker):
        config = tmp_path / f"{name}.yaml"
        config.write_bytes(text)
        code, _, err = run_main(monkeypatch, capsys, "train", "--config", str(config))
        where = runs / "nowhere" if name == "missing-data" else config
        assert_cli_error(code, err, where, fragment)
        assert not runs.exists(), name  # no run folder for a run that never started
    assert not marker.exists()
    config = tmp_path / "good.yaml"
    config.write_text(_tiny_config(tiny_data, runs))
    for override, fragment in (
        ("train.epochs=[", "not valid YAML"),
        (f"train.epochs={DEEP}", "not valid YAML"),
        ("model.encoder_weights.x=1", "is not a section"),
        ("epochs", "expected key=value"),
        ("augment.pipeline={foo: 1}", "augment.pipeline: not an albumentations pipeline"),
    ):
        code, _, err = run_main(monkeypatch, capsys, "train", "--config", str(config), override)
        assert code == 2 and err.count("\n") == 1 and fragment in err, err
        assert TRACEBACK not in err and not list(runs.glob("*/weights"))


# ---- pickles named like checkpoints: refused, never unpickled ----------------------------------


def _pickle_checkpoints(folder: Path, marker: Path) -> dict[str, Path]:
    """Pickles (plain and torch.save zip) under every name a checkpoint file may have."""
    weights = folder / "weights"
    weights.mkdir(parents=True)
    files = {
        "best.safetensors": pickle_that_touches(marker),
        "best.pth": torch_zip_that_touches(marker),
        "plain.pt": pickle_that_touches(marker),
        "best.json": pickle_that_touches(marker),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = weights / name
        paths[name].write_bytes(data)
    return paths


def test_pickled_checkpoints_are_refused(tmp_path: Path, tiny_data: Path, monkeypatch, capsys):
    pytest.importorskip("torch")
    marker = tmp_path / "MARKER"
    paths = _pickle_checkpoints(tmp_path / "run", marker)
    cases = [
        (paths["best.safetensors"], paths["best.safetensors"], "not a safetensors file"),
        (paths["best.pth"], paths["best.pth"], "pickle files are refused"),
        (paths["plain.pt"], paths["plain.pt"], "pickle files are refused"),
        (paths["best.json"], paths["best.safetensors"], "not a safetensors file"),
    ]
    for given, named, fragment in cases:
        out = tmp_path / "model.onnx"
        code, _, err = run_main(monkeypatch, capsys, "export", str(given), "--out", str(out))
        assert_cli_error(code, err, named, fragment)
        assert not out.exists()
        code, _, err = run_main(monkeypatch, capsys, "eval", str(given), "--data", str(tiny_data))
        assert_cli_error(code, err, named, fragment)
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_resume_and_encoder_weights_never_unpickle(
    tmp_path: Path, tiny_data: Path, monkeypatch, capsys
) -> None:
    pytest.importorskip("torch")
    import torch
    from safetensors.torch import save as save_safetensors

    marker = tmp_path / "MARKER"
    runs = tmp_path / "runs"
    run = tmp_path / "resumable"
    (run / "weights").mkdir(parents=True)
    (run / "config.yaml").write_text(_tiny_config(tiny_data, runs))
    last = run / "weights" / "last.safetensors"
    last.write_bytes(pickle_that_touches(marker))
    code, _, err = run_main(monkeypatch, capsys, "train", "--resume", str(run))
    assert_cli_error(code, err, last, "not a safetensors file")
    # valid weights of a version-1 checkpoint, but its resumable state is a pickle
    weights = save_safetensors({"w": torch.zeros(2)})
    last.write_bytes(weights)
    sidecar = {
        "format": "dermaseg-checkpoint",
        "format_version": 1,
        "meta": {"epoch": 1},
        "sha256": {"weights": hashlib.sha256(weights).hexdigest(), "train_state": "0" * 64},
        "train_state": {},
    }
    state = run / "weights" / "last.state.safetensors"
    state.write_bytes(pickle_that_touches(marker))
    (run / "weights" / "last.json").write_text(json.dumps(sidecar))
    code, _, err = run_main(monkeypatch, capsys, "train", "--resume", str(run))
    assert_cli_error(code, err, state, "not a safetensors file")
    # the encoder weights of a new run: pickles under both allowed suffixes
    config = tmp_path / "tiny.yaml"
    config.write_text(_tiny_config(tiny_data, runs))
    encoder_files = {
        "evil.pth": (torch_zip_that_touches(marker), "not a weights-only state dict"),
        "evil.safetensors": (pickle_that_touches(marker), "not a safetensors file"),
        "half.safetensors": (save_safetensors({"w": torch.zeros(64)})[:-20], "safetensors"),
    }
    for name, (data, fragment) in encoder_files.items():
        path = tmp_path / name
        path.write_bytes(data)
        override = f"model.encoder_weights={path}"
        code, _, err = run_main(monkeypatch, capsys, "train", "--config", str(config), override)
        assert_cli_error(code, err, path, fragment)
    assert not marker.exists()
    assert not list(runs.glob("*/weights/*.safetensors"))  # no run got as far as a checkpoint


# ---- ONNX files that are not dermaseg planning models ------------------------------------------


def onnx_cases(folder: Path, marker: Path) -> list[tuple[Path, str]]:
    """(model file, error fragment) for `plan --model`."""
    from onnx import TensorProto

    folder.mkdir(parents=True, exist_ok=True)
    other = folder / "identity.onnx"
    fake_planning_model(other, metadata={"dermaseg.contract_version": ""})
    raw = {
        "pickle.onnx": (pickle_that_touches(marker), "not a loadable ONNX model"),
        "zero.onnx": (b"", "not a loadable ONNX model"),
        "text.onnx": (b"ir_version: 9\n", "not a loadable ONNX model"),
    }
    cases = []
    for name, (data, fragment) in raw.items():
        (folder / name).write_bytes(data)
        cases.append((folder / name, fragment))
    broken = {
        "float-input.onnx": ({"image_type": TensorProto.FLOAT}, "input 'image' should be"),
        "int64-input.onnx": ({"image_type": TensorProto.INT64}, "input 'image' should be"),
        "no-area.onnx": ({"drop_output": "area_px"}, "output 'area_px' should be"),
        "custom-op.onnx": ({"custom_domain": True}, "not a loadable ONNX model"),
        "no-contract.onnx": ({"metadata": {"dermaseg.contract_version": "0"}}, "contract"),
        "bad-classes.onnx": (
            {"metadata": {"dermaseg.classes": '{"a": 1}'}},
            "invalid class list",
        ),
        "bad-classes-json.onnx": (
            {"metadata": {"dermaseg.classes": "[{"}},
            "invalid class list",
        ),
        "bad-working-size.onnx": (
            {"metadata": {"dermaseg.working_size": "big"}},
            "invalid working size",
        ),
    }
    for name, (kwargs, fragment) in broken.items():
        cases.append((fake_planning_model(folder / name, **kwargs), fragment))
    secret = folder.parent / "secret.bin"
    secret.write_bytes(b"\x01\x02\x03\x04")
    for name, location in (
        ("external-dotdot.onnx", "../secret.bin"),
        ("external-abs.onnx", str(secret)),
    ):
        cases.append((onnx_reading_outside(folder / name, location), "not a loadable ONNX model"))
    return cases


def test_onnx_cases(tmp_path: Path, monkeypatch, capsys) -> None:
    pytest.importorskip("onnx")
    marker = tmp_path / "MARKER"
    photo = write_image(tmp_path / "p.png", smooth_rgb(40, 48))
    out = tmp_path / "out"
    for model, fragment in onnx_cases(tmp_path / "models", marker):
        code, _, err = run_main(
            monkeypatch, capsys, "plan", str(photo), "-m", str(model), "-o", str(out)
        )
        assert_cli_error(code, err, model, fragment)
        code, _, err = run_main(monkeypatch, capsys, "model", "info", str(model))
        assert_cli_error(code, err, model, fragment)
        assert not out.exists()
    assert not marker.exists()


def test_models_run_on_the_cpu_provider_alone(tmp_path: Path) -> None:
    """No execution provider or custom-op library beyond onnxruntime's own CPU kernels."""
    from dermaseg.infer.session import PlanningModel

    model = PlanningModel(fake_planning_model(tmp_path / "fake.onnx"))
    assert model.session.get_providers() == ["CPUExecutionProvider"]
    source = (Path(__file__).parents[1] / "infer" / "session.py").read_text()
    assert "register_custom_ops_library" not in source


def test_every_dependency_has_an_upper_bound() -> None:
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        requirements += extra
    assert len(requirements) > 10
    for text in requirements:
        operators = {spec.operator for spec in Requirement(text).specifier}
        assert operators & {"<", "<=", "==", "~=", "==="}, f"{text}: no upper bound"


def test_onnx_wrong_input_type_in_eval(tmp_path: Path, tiny_data: Path, monkeypatch, capsys):
    pytest.importorskip("torch")
    from onnx import TensorProto

    model = fake_planning_model(tmp_path / "float.onnx", image_type=TensorProto.FLOAT)
    code, _, err = run_main(monkeypatch, capsys, "eval", str(model), "--data", str(tiny_data))
    assert_cli_error(code, err, model, "input 'image' should be tensor(uint8)")


def test_fake_model_is_a_valid_planning_model(tmp_path: Path, monkeypatch, capsys) -> None:
    """The corpus's broken models differ from this one in exactly one way each."""
    pytest.importorskip("onnx")
    model = fake_planning_model(tmp_path / "fake.onnx")
    photo = write_image(tmp_path / "p.png", smooth_rgb(40, 48))
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "plan",
        str(photo),
        "-m",
        str(model),
        "-o",
        str(tmp_path / "out"),
        "--no-marker",
    )
    assert code == 0, err
    assert (tmp_path / "out" / "p.plan.json").is_file()


# ---- COCO and LabelMe paths that leave the dataset ---------------------------------------------


def _coco_dataset(root: Path, names: list[str], allow: bool) -> Path:
    images = [{"id": i + 1, "file_name": n, "width": 48, "height": 40} for i, n in enumerate(names)]
    annotations = [
        {
            "id": i + 1,
            "image_id": i + 1,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [[2, 2, 20, 2, 20, 20, 2, 20]],
        }
        for i in range(len(names))
    ]
    categories = [{"id": 1, "name": "vitiligo"}]
    (root / "images").mkdir(parents=True)
    write_image(root / "images" / "inside.png", smooth_rgb(40, 48))
    (root / "ann.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    (root / "dataset.yaml").write_text(
        f"format: coco\nannotations: ann.json\nimages: images\nallow_outside_root: {allow}\n"
    )
    return root


def _labelme_dataset(root: Path, names: list[str], allow: bool) -> Path:
    (root / "images").mkdir(parents=True)
    write_image(root / "images" / "inside.png", smooth_rgb(40, 48))
    for i, name in enumerate(names):
        shape = {
            "label": "vitiligo",
            "shape_type": "polygon",
            "points": [[2, 2], [20, 2], [20, 20]],
        }
        entry = {"imagePath": name, "imageHeight": 40, "imageWidth": 48, "shapes": [shape]}
        (root / "images" / f"a{i}.json").write_text(json.dumps(entry))
    (root / "dataset.yaml").write_text(
        f"format: labelme\nimages: images\nallow_outside_root: {allow}\n"
    )
    return root


@pytest.mark.parametrize("fmt", ["coco", "labelme"])
def test_paths_never_leave_the_dataset_unless_allowed(
    tmp_path: Path, monkeypatch, capsys, fmt: str
) -> None:
    outside = write_image(tmp_path / "outside.png", smooth_rgb(40, 48, seed=3))
    names = {
        "dotdot": "../../outside.png",
        "absolute": str(outside),
        "windows": "C:\\Users\\x\\outside.png",
        "inside-dotdot-out": "inside.png/../../../outside.png",
    }
    build = _coco_dataset if fmt == "coco" else _labelme_dataset
    for allow in (False, True):
        root = build(tmp_path / f"{fmt}-{allow}", [*names.values(), "inside.png"], allow)
        code, out, err = run_main(monkeypatch, capsys, "data", "check", str(root), "--json")
        assert TRACEBACK not in err
        report = json.loads(out)
        unsafe = [p for p in report["problems"] if p["kind"] == "unsafe-path"]
        if not allow:
            assert code == 1 and len(unsafe) == len(names), report["problems"]
            assert all("allow_outside_root" in p["message"] and p["path"] for p in unsafe)
            assert report["photos"] == 1  # only the photo inside the dataset is read
        else:
            assert not unsafe and report["photos"] >= 2  # the outside photo is read


# ---- round 2 (issue 18): output names, commits as a unit, index, modes, options, contract ------


def _plan_json(out: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    model = fake_planning_model(out.parent / "fake.onnx")
    result = run_cli("plan", *args, "-m", str(model), "--no-marker", "-o", str(out), "--json")
    assert TRACEBACK not in result.stderr, result.stderr
    return result, json.loads(result.stdout) if result.stdout.strip() else {}


def _assert_every_photo_has_its_own_plan(summary: dict, count: int) -> None:
    plans = [Path(item["outputs"]["plan"]) for item in summary["planned"]]
    assert len(summary["planned"]) == count and len(set(plans)) == count, plans
    for item, plan_path in zip(summary["planned"], plans, strict=True):
        digest = hashlib.sha256(Path(item["photo"]).read_bytes()).hexdigest()
        assert json.loads(plan_path.read_text())["photo"]["sha256"] == digest, plan_path


def test_output_names_are_unique_whatever_the_inputs(tmp_path: Path) -> None:
    """x-2.jpg, x.jpg, x.png; a/IMG.jpg, b/IMG.jpg; x/a.jpg, y/a.jpg, z/a-2.jpg: each its own
    plan, even with --overwrite (which only replaces plans of earlier runs)."""
    folder = tmp_path / "one"
    for seed, name in enumerate(("x-2.jpg", "x.jpg", "x.png", "X.JPG")):
        write_image(folder / name, smooth_rgb(40, 48, seed=seed))
    deep = tmp_path / "deep"
    for seed, rel in enumerate(("x/a.jpg", "y/a.jpg", "z/a-2.jpg", "p1/IMG.jpg", "p2/IMG.jpg")):
        write_image(deep / rel, smooth_rgb(40, 48, seed=10 + seed))
    result, summary = _plan_json(tmp_path / "o1", str(folder), "--overwrite")
    assert result.returncode == 0, result.stderr
    _assert_every_photo_has_its_own_plan(summary, 4)
    folders = [str(deep / d) for d in ("x", "y", "z", "p1", "p2")]
    result, summary = _plan_json(tmp_path / "o2", *folders, "--overwrite")
    assert result.returncode == 0, result.stderr
    _assert_every_photo_has_its_own_plan(summary, 5)
    result, summary = _plan_json(tmp_path / "o3", str(deep), "--recursive")
    assert result.returncode == 0, result.stderr
    _assert_every_photo_has_its_own_plan(summary, 5)
    assert (tmp_path / "o3" / "p1" / "IMG.plan.json").is_file()  # relative paths kept
    assert (tmp_path / "o3" / "z" / "a-2.plan.json").is_file()
    index = (tmp_path / "o3" / "index.html").read_text()
    assert 'href="p2/IMG.html"' in index


def test_a_photos_outputs_are_committed_as_a_unit(tmp_path: Path, monkeypatch) -> None:
    """A failure while writing (full disk) or while renaming leaves no file of the set; a set
    without its plan JSON (a killed run) is replaced without --overwrite."""
    from dermaseg import fileio
    from dermaseg.infer.batch import BatchPlanner, CalibrationSettings
    from dermaseg.infer.outputs import SUFFIXES

    photo = write_image(tmp_path / "p.png", smooth_rgb(40, 48))
    mask = write_mask(tmp_path / "m.png", 48, 40)
    out = tmp_path / "out"
    planner = BatchPlanner(out, calibration=CalibrationSettings(detect_marker=False))
    real_fsync, real_replace = os.fsync, os.replace
    calls = {"n": 0}

    def full_disk(fd):  # the 4th file of the set cannot be made durable
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device (simulated)")
        real_fsync(fd)

    def rename_fails(src, dst):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(5, "I/O error (simulated)")
        real_replace(src, dst)

    for target, broken in (("fsync", full_disk), ("replace", rename_fails)):
        calls["n"] = 0
        monkeypatch.setattr(fileio.os, target, broken)
        result = planner.run([photo], [mask])
        monkeypatch.undo()
        assert not result.planned and "simulated" in result.failed[0][1]
        assert not out.exists() or not list(out.iterdir()), list(out.iterdir())
    # what a killed run leaves: some files of the set, no plan JSON
    out.mkdir(exist_ok=True)
    (out / "p.html").write_text("half")
    (out / "p.mask.png").write_bytes(b"half")
    result = planner.run([photo], [mask])
    assert len(result.planned) == 1 and not result.failed and not result.skipped
    assert sorted(p.name for p in out.iterdir()) == sorted(f"p{s}" for s in SUFFIXES.values())
    assert (out / "p.html").read_text().rstrip().endswith("</html>")
    assert len(planner.run([photo], [mask]).skipped) == 1  # complete now: kept


def test_index_lists_every_plan_and_files_get_the_umask(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for seed in range(2):
        write_image(folder / f"p{seed}.jpg", smooth_rgb(40, 48, seed=seed))
    out = tmp_path / "out"
    script = (
        "import os, sys; os.umask(0o002); from dermaseg.cli import main; "
        "sys.argv = ['dermaseg'] + sys.argv[1:]; main()"
    )
    model = fake_planning_model(tmp_path / "fake.onnx")
    args = [str(folder), "-m", str(model), "--no-marker", "-o", str(out)]
    first = subprocess.run([sys.executable, "-c", script, "plan", *args], capture_output=True)
    assert first.returncode == 0, first.stderr
    write_image(folder / "p2.jpg", smooth_rgb(40, 48, seed=2))  # one new photo, rerun
    again = run_cli("plan", *args)
    assert again.returncode == 0 and "1 planned, 0 failed, 2 skipped" in again.stdout, again
    index = (out / "index.html").read_text()
    assert "3 planned (" in index and ", 0 failed." in index and "already exists" not in index
    assert all(f'href="p{i}.html"' in index for i in range(3))
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()}
    assert modes["p0.plan.json"] == 0o664 and modes["p0.overlay.png"] == 0o664  # umask 002
    assert modes["p2.plan.json"] == 0o666 & ~_umask()  # the test's own umask


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--mm-per-pixel", "inf"], "--mm-per-pixel"),
        (["--mm-per-pixel", "1e308"], "--mm-per-pixel"),
        (["--mm-per-pixel", "1e-300"], "--mm-per-pixel"),
        (["--mm-per-pixel", "nan"], "--mm-per-pixel"),
        (["--marker-mm", "inf"], "--marker-mm"),
        (["--simplify-px", "inf"], "--simplify-px"),
        (["--margin-mm", "500"], "--margin-mm"),
        (["--marker-dict", "DICT_NOPE"], "'DICT_NOPE' is not an OpenCV ArUco dictionary"),
        (["--threads", "100000"], "--threads"),
        (["--mask", "{mask}"], "not both"),
        (["-o", "{file}"], "is a file, not a folder"),
        (["-o", "{file}/below"], "is a file, not a folder"),
        (["--no-marker", "true"], "flags such as --no-marker take no value"),
    ],
)
def test_options_are_checked_once_before_any_photo(
    tmp_path: Path, monkeypatch, capsys, args: list[str], fragment: str
) -> None:
    folder = tmp_path / "photos"
    for seed in range(3):
        write_image(folder / f"p{seed}.jpg", smooth_rgb(40, 48, seed=seed))
    model = fake_planning_model(tmp_path / "fake.onnx")
    (tmp_path / "a-file").write_text("x")
    mask = str(write_mask(tmp_path / "m.png", 48, 40))
    args = [a.replace("{mask}", mask).replace("{file}", str(tmp_path / "a-file")) for a in args]
    code, _, err = run_main(
        monkeypatch, capsys, "plan", str(folder), "-m", str(model), "-o", str(tmp_path / "o"), *args
    )
    assert code == 2, err
    assert TRACEBACK not in err and "unexpected" not in err
    assert err.startswith("error: ") and err.count("\n") == 1, err  # one line, not one a photo
    assert fragment in err, err
    assert not (tmp_path / "o").exists()


def test_a_model_breaking_the_contract_is_blamed_not_the_photo(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    for seed in range(3):
        write_image(folder / f"p{seed}.jpg", smooth_rgb(40, 48, seed=seed))
    model = fake_planning_model(tmp_path / "raw.onnx", raw_mask=True)
    result = run_cli(
        "plan", str(folder), "-m", str(model), "--no-marker", "-o", str(tmp_path / "o")
    )
    assert result.returncode == 2 and TRACEBACK not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {model}: breaks the planning contract")
    assert "is not a class id" in lines[0]


def test_coco_polygons_far_outside_the_image_are_errors(tmp_path: Path, monkeypatch, capsys):
    root = _coco_dataset(tmp_path / "coco", ["inside.png"], False)
    data = json.loads((root / "ann.json").read_text())
    huge = 1e308
    data["annotations"][0]["segmentation"] = [[-huge, -huge, huge, -huge, huge, huge, -huge, huge]]
    (root / "ann.json").write_text(json.dumps(data))
    code, out, _ = run_main(monkeypatch, capsys, "data", "check", str(root), "--json")
    report = json.loads(out)
    assert code == 1 and report["errors"] == 1, report["problems"]
    assert "far outside the 48x40 image" in report["problems"][0]["message"]


def test_names_with_a_newline_cannot_forge_lines(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "x.jpg\nerror: other.jpg: planted").write_bytes(b"junk")
    model = fake_planning_model(tmp_path / "fake.onnx")
    result = run_cli("plan", str(folder / "x.jpg\nerror: other.jpg: planted"), "-m", str(model))
    assert result.returncode == 1 and TRACEBACK not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'" in errors[0] and "\\n" in errors[0], errors


def test_no_file_digest_anywhere() -> None:
    """hashlib.file_digest is Python 3.11+; requires-python says 3.10."""
    sources = [p for d in ("src", "datasets", "infer", "train") for p in (ROOT / d).rglob("*.py")]
    offenders = [p for p in sources if "file_digest(" in p.read_text()]
    assert not offenders


def test_help_and_messages_name_what_exists(tmp_path: Path, monkeypatch, capsys) -> None:
    """Flags show no `<bool>`, paragraphs are not cut at the source's line ends, and `data
    synth` into a dataset names an option that exists."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main(monkeypatch, capsys, "plan", "--help")
    assert code == 0 and "<bool>" not in out
    assert "1 when some failed (the others are still written)" in out
    (tmp_path / "manifest.json").write_text("{}")
    code, _, err = run_main(monkeypatch, capsys, "data", "synth", "--out", str(tmp_path))
    assert code == 2 and "--overwrite" not in err and "give another --out" in err
    code, out, _ = run_main(monkeypatch, capsys, "plan", "--schema")
    assert code == 0 and json.loads(out)["title"]


def test_a_photo_named_index_and_out_in_the_photo_folder(tmp_path: Path, monkeypatch, capsys):
    """`index.png` gets its own report (the run's index.html is another file), and with --out
    the photos' own folder a re-run does not plan the outputs of the first run as photos."""
    folder = tmp_path / "photos"
    write_image(folder / "index.png", smooth_rgb(40, 48, seed=1))
    write_image(folder / "a.png", smooth_rgb(40, 48, seed=2))
    model = fake_planning_model(tmp_path / "fake.onnx")
    args = ["plan", str(folder), "-m", str(model), "--no-marker", "-o", str(folder), "--json"]
    code, out, err = run_main(monkeypatch, capsys, *args)
    assert code == 0, err
    summary = json.loads(out)
    _assert_every_photo_has_its_own_plan(summary, 2)
    reports = {Path(p["photo"]).name: Path(p["outputs"]["report"]).name for p in summary["planned"]}
    assert reports == {"a.png": "a.html", "index.png": "index-2.html"}
    index = (folder / "index.html").read_text()
    assert 'href="index-2.html"' in index and 'href="a.html"' in index
    code, out, err = run_main(monkeypatch, capsys, *args)
    summary = json.loads(out)
    assert code == 0 and not summary["planned"] and not summary["failed"], summary
    assert len(summary["skipped"]) == 2


@pytest.mark.parametrize(
    ("command", "args", "option", "bounds"),
    [
        ("data check", ["{x}", "--workers", "100000"], "--workers", "[0<=x<=256]"),
        ("export", ["{x}", "--working-size", "1048576"], "--working-size", "[64<=x<=2048]"),
        ("export", ["{x}", "--max-dice-drop", "nan"], "--max-dice-drop", "[0.0<=x<=1.0]"),
        ("rank", ["{x}", "-m", "{x}", "--threads", "100000"], "--threads", "[0<=x<=256]"),
    ],
)
def test_numeric_options_are_bounded_and_show_it(
    tmp_path: Path, monkeypatch, capsys, command: str, args: list[str], option: str, bounds: str
) -> None:
    """A thread count or working size beyond any machine is refused while parsing (one line,
    exit 2), and --help shows the bounds."""
    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = run_main(monkeypatch, capsys, *command.split(), "--help")
    line = next(x for x in out.splitlines() if x.lstrip("│ ").startswith(option + " "))
    assert code == 0 and bounds in line, line
    filled = [str(tmp_path / "x") if a == "{x}" else a for a in args]
    code, _, err = run_main(monkeypatch, capsys, *command.split(), *filled)
    assert code == 2 and err.count("\n") == 1 and option in err, err


def test_review_desk_lists_around_hostile_plan_files(tmp_path: Path, monkeypatch, capsys):
    """A plan JSON nested 100,000 deep, one of the wrong shape and a FIFO named like a plan
    are left out of the desk's list (the good plan is listed); a deep request body is a 400."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from dermaseg.infer.review.app import COOKIE, create_app
    from dermaseg.infer.review.folder import PlanFolder

    out = tmp_path / "out"
    photo = write_image(tmp_path / "good.png", smooth_rgb(40, 48))
    model = fake_planning_model(tmp_path / "fake.onnx")
    code, _, err = run_main(
        monkeypatch, capsys, "plan", str(photo), "-m", str(model), "--no-marker", "-o", str(out)
    )
    assert code == 0, err
    (out / "deep.plan.json").write_text("[" * 100_000 + "]" * 100_000)
    (out / "odd.plan.json").write_text('{"photo": [], "procedure": "x", "review": 1}')
    os.mkfifo(out / "fifo.plan.json")
    client = TestClient(create_app(PlanFolder(out), "t", 8123), base_url="http://127.0.0.1:8123")
    client.cookies.set(COOKIE, "t")
    listed = client.get("/api/photos")
    assert listed.status_code == 200, listed.text
    assert "good" in listed.text and "deep" not in listed.text and "odd" not in listed.text
    deep = client.post("/api/photo/meta?stem=good", content="[" * 30_000 + "]" * 30_000)
    assert deep.status_code == 400 and "nested too deeply" in deep.text, deep.text


@pytest.mark.parametrize("target", ["exists.csv", "a-file/below.csv"])
def test_eval_per_image_is_checked_before_evaluating(
    tmp_path: Path, monkeypatch, capsys, target: str
) -> None:
    """An unusable --per-image is one error before any work (the checkpoint is not even read:
    here it does not exist)."""
    pytest.importorskip("torch")
    (tmp_path / "exists.csv").write_text("x")
    (tmp_path / "a-file").write_text("x")
    args = ["eval", str(tmp_path / "nothing.safetensors"), "--data", str(tmp_path)]
    code, _, err = run_main(monkeypatch, capsys, *args, "--per-image", str(tmp_path / target))
    fragment = "already exists" if target == "exists.csv" else "is a file, not a folder"
    assert code == 2 and err.count("\n") == 1 and fragment in err, err


def test_mask_and_model_together_are_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    """One photo, its mask and a model: which one plans it? Refused, not the model ignored."""
    photo = write_image(tmp_path / "p.png", smooth_rgb(40, 48))
    mask = write_mask(tmp_path / "m.png", 48, 40)
    model = fake_planning_model(tmp_path / "fake.onnx")
    args = [str(photo), "--mask", str(mask), "-m", str(model), "-o", str(tmp_path / "o")]
    code, _, err = run_main(monkeypatch, capsys, "plan", *args, "--no-marker")
    assert code == 2 and err.count("\n") == 1 and "not both" in err, err
    assert not (tmp_path / "o").exists()
