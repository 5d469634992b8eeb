"""Weight EMA (train.ema): the best checkpoint holds the averaged weights, `last` carries them for
resuming, and a resumed run continues the same average as an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from dermaseg.datasets.synth import generate_dataset  # noqa: E402
from dermaseg.train.checkpoint import load_checkpoint  # noqa: E402
from dermaseg.train.config import TrainConfig, load_run_config  # noqa: E402
from dermaseg.train.ema import build_ema  # noqa: E402
from dermaseg.train.trainer import train  # noqa: E402

TINY = (
    "model.encoder_weights=null",
    "model.decoder_channels=[16,16,16,16,8]",
    "input.size=64",
    "train.batch_size=4",
    "train.workers=0",
    "train.overlay_every=0",
    "optim.schedule=constant",  # the same LR whether the run plans 1 or 2 epochs
    "optim.warmup_epochs=0",
    "train.ema=true",
    "train.ema_decay=0.9",
)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ema") / "data"
    generate_dataset(root, n=12, size=96, seed=1)
    return root


def _train(data: Path, runs: Path, epochs: int, resume: Path | None = None):
    spec = str(resume / "config.yaml") if resume else "synthetic-demo"
    extra = [] if resume else [f"data={data}", f"runs_dir={runs}", *TINY]
    config = load_run_config(spec, [*extra, f"train.epochs={epochs}"])
    return train(config, resume_dir=resume, show_progress=False)


def test_best_holds_the_average_and_resume_continues_it(data: Path, tmp_path: Path) -> None:
    one = _train(data, tmp_path / "a", 1)
    best = load_checkpoint(one.run_dir / "weights" / "best")
    last = load_checkpoint(one.run_dir / "weights" / "last")
    assert last.train_state.ema is not None
    assert best.model_state.keys() == last.train_state.ema.keys()
    for key, value in best.model_state.items():  # best = the averaged weights, not the raw ones
        assert torch.equal(value, last.train_state.ema[key]), key
    moved = [k for k, v in last.model_state.items() if not torch.equal(v, best.model_state[k])]
    assert moved, "the average should lag the raw weights"

    resumed = _train(data, tmp_path / "a", 2, resume=one.run_dir)
    straight = _train(data, tmp_path / "b", 2)
    assert resumed.epochs_done == straight.epochs_done == 2
    got = load_checkpoint(resumed.run_dir / "weights" / "last").train_state.ema
    want = load_checkpoint(straight.run_dir / "weights" / "last").train_state.ema
    for key in want:
        torch.testing.assert_close(got[key], want[key], rtol=1e-5, atol=1e-6)


def test_ema_is_off_by_default_and_on_in_the_auto_recipe() -> None:
    net = torch.nn.Conv2d(3, 2, 1)
    assert build_ema(net, TrainConfig()) is None
    auto = load_run_config("auto", ["data=missing-folder"])  # no data: no fingerprint
    ema = build_ema(net, auto.train)
    assert ema is not None and torch.equal(ema.module.weight, net.weight)
