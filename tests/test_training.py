"""Training end to end on tiny synthetic data: run folder, checkpoints, eval, folds, value maps."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import make_mask_dataset, run_cli

torch = pytest.importorskip("torch")

from dermaseg.datasets.synth import generate_dataset  # noqa: E402
from dermaseg.train.checkpoint import load_checkpoint  # noqa: E402
from dermaseg.train.config import load_run_config  # noqa: E402
from dermaseg.train.evaluate import evaluate_checkpoint, load_model  # noqa: E402
from dermaseg.train.runlog import TIMED_PARTS, Background  # noqa: E402
from dermaseg.train.trainer import train  # noqa: E402

PARTS = (*TIMED_PARTS, "other")

TINY_MODEL = (
    "model.encoder=tu-efficientnet_lite0",
    "model.encoder_weights=null",
    "model.decoder_channels=[16,16,16,16,8]",
    "input.size=64",
    "train.batch_size=4",
    "train.workers=0",
)


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    generate_dataset(root, n=16, size=96, seed=3)
    return root


def tiny_config(data: Path, runs: Path, *extra: str):
    return load_run_config(
        "synthetic-demo", [f"data={data}", f"runs_dir={runs}", *TINY_MODEL, *extra]
    )


def read_metrics(run_dir: Path) -> list[dict]:
    with (run_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


def test_run_folder_checkpoints_and_eval(synth_data: Path, tmp_path: Path, capsys) -> None:
    config = tiny_config(synth_data, tmp_path / "runs", "train.epochs=2", "train.overlay_every=1")
    result = train(config, show_progress=False)
    run = result.run_dir
    assert run == tmp_path / "runs" / "synthetic-demo" and result.epochs_done == 2
    for name in (
        "config.yaml",
        "augment.json",
        "metrics.csv",
        "curves.png",
        "overlays/epoch_001.png",
        "overlays/epoch_002.png",
        "weights/best.safetensors",
        "weights/last.safetensors",
    ):
        assert (run / name).is_file(), name
    rows = read_metrics(run)
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert {"train_loss", "val_mean_dice", "dice_vitiligo", "bf1_scar", "area_err_thinning"} <= set(
        rows[0]
    )
    for row in rows:  # where each epoch's wall time went; the parts add up to the epoch
        parts = {p: float(row[f"{p}_seconds"]) for p in PARTS}
        assert min(parts.values()) >= 0 and sum(parts.values()) == pytest.approx(
            float(row["seconds"]), abs=1e-3
        )
        assert parts["step"] > 0 and parts["val"] > 0 and parts["checkpoint"] > 0
    last = load_checkpoint(run / "weights" / "last")  # written by the background thread
    assert last.meta["epoch"] == last.train_state.epoch == 2 and "format" not in last.meta
    said = capsys.readouterr().err
    assert f"Training synthetic-demo -> {run}" in said and "12 train / 2 val photos" in said
    assert f"Next: dermaseg export {run / 'weights' / 'best.safetensors'}" in said
    augment = json.loads((run / "augment.json").read_text())
    assert "transform" in augment  # albumentations' own serialisation, reloadable with A.from_dict

    model, meta = load_model(run / "weights" / "best")
    assert meta["working_size"] == 64 and [c["name"] for c in meta["taxonomy"]][1] == "vitiligo"
    assert meta["world_size"] == 1
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)

    metrics = evaluate_checkpoint(run / "weights" / "best.json", synth_data, "val")
    assert metrics["photos"] > 0 and 0 <= metrics["mean_dice"] <= 1
    assert set(metrics["per_class"]) == {"background", "vitiligo", "scar", "thinning"}

    second = train(config, show_progress=False)  # same name: a new folder, nothing overwritten
    assert second.run_dir.name == "synthetic-demo-2"


def test_frozen_stages_keep_their_pretrained_weights(synth_data: Path, tmp_path: Path) -> None:
    from dermaseg.train.config import ModelConfig
    from dermaseg.train.model import build_model

    config = tiny_config(
        synth_data,
        tmp_path / "runs",
        "train.epochs=1",
        "model.encoder_weights=imagenet-lite0",
        "model.frozen_stages=2",
    )
    trained = load_checkpoint(
        train(config, show_progress=False).run_dir / "weights" / "last"
    ).model_state
    start = build_model(ModelConfig(decoder_channels=[16, 16, 16, 16, 8]), 4).state_dict()
    prefix = "net.encoder.model."
    for name in ("conv_stem.weight", "bn1.running_mean", "blocks.1.0.conv_pw.weight"):
        assert torch.equal(trained[prefix + name], start[prefix + name]), name
    assert not torch.equal(
        trained[prefix + "blocks.2.0.conv_pw.weight"], start[prefix + "blocks.2.0.conv_pw.weight"]
    )


def test_eval_cli_json(synth_data: Path, tmp_path: Path) -> None:
    result = train(
        tiny_config(synth_data, tmp_path / "runs", "train.epochs=1"), show_progress=False
    )
    cli = run_cli(
        "eval",
        str(result.run_dir / "weights" / "best.safetensors"),
        "--data",
        str(synth_data),
        "--split",
        "all",
        "--json",
    )
    assert cli.returncode == 0, cli.stderr
    report = json.loads(cli.stdout)
    assert report["photos"] == 16 and "boundary_f1" in report["per_class"]["scar"]


def test_binary_mask_dataset_trains_with_a_value_map(tmp_path: Path) -> None:
    data = make_mask_dataset(
        tmp_path / "binary",
        n=8,
        size=(64, 64),
        values=(255,),
        yaml_text="value_map: {0: background, 255: vitiligo}\n"
        "split: {seed: 0, val: 0.25, test: 0.0}\n",
    )
    result = train(tiny_config(data, tmp_path / "runs", "train.epochs=1"), show_progress=False)
    assert result.best_metrics["per_class"]["vitiligo"]["support_px"] > 0


def test_folds_report_mean_and_std(synth_data: Path, tmp_path: Path) -> None:
    config = tiny_config(synth_data, tmp_path / "runs", "train.epochs=1")
    cli = run_cli(
        "train",
        "--config",
        "synthetic-demo",
        "--folds",
        "2",
        "--json",
        f"data={synth_data}",
        f"runs_dir={tmp_path / 'runs'}",
        *TINY_MODEL,
        "train.epochs=1",
    )
    assert cli.returncode == 0, cli.stderr
    summary = json.loads(cli.stdout)
    assert [Path(r["run_dir"]).name for r in summary["runs"]] == [
        f"{config.name}-fold0",
        f"{config.name}-fold1",
    ]
    stats = summary["folds"]["mean_dice"]
    dice = [r["best_mean_dice"] for r in summary["runs"]]
    assert stats["n"] == 2 and stats["mean"] == pytest.approx(np.mean(dice))
    assert stats["std"] == pytest.approx(np.std(dice))


def test_background_writes_in_order_and_raises_in_the_training_thread() -> None:
    done: list[int] = []

    def write(index: int) -> None:
        time.sleep(0.01 * (5 - index))  # the first jobs are the slowest
        done.append(index)

    def disk_full() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), Background() as writer:
        for index in range(5):
            writer.submit(write, index)
        writer.submit(disk_full)
        writer.wait()
    assert done == [0, 1, 2, 3, 4]


@pytest.mark.slow  # dynamo traces the U-Net's steps: about 25 s of CPU time
def test_compiled_training_saves_plain_keys_and_resumes(
    synth_data: Path, tmp_path: Path, monkeypatch
) -> None:
    """train.compile wraps the steps in torch.compile (dynamo's eager backend here: no C++
    compiler needed); checkpoints keep the model's own keys, so export and resume read them."""
    compiled = []

    def compile_eagerly(module, **options):
        compiled.append(module)
        return real_compile(module, backend="eager")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_eagerly)
    config = tiny_config(synth_data, tmp_path / "runs", "train.epochs=1", "train.compile=true")
    run = train(config, show_progress=False).run_dir
    assert len(compiled) == 1
    state = load_checkpoint(run / "weights" / "last").model_state
    assert not [k for k in state if "_orig_mod" in k or k.startswith("module.")]
    model, _ = load_model(run / "weights" / "best")  # what export loads
    assert set(model.state_dict()) == set(state)
    more = config.model_copy(update={"train": config.train.model_copy(update={"epochs": 2})})
    assert train(more, resume_dir=run, show_progress=False).epochs_done == 2
