"""Run config loading: shipped recipes, overrides, and one-line errors naming the bad key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli

pytest.importorskip("torch")

from dermaseg.errors import DermasegError
from dermaseg.train.config import load_run_config, shipped_configs


def test_shipped_recipes_validate() -> None:
    assert {"synthetic-demo", "cpu-lite", "gpu-resnet34"} <= set(shipped_configs())
    for name in shipped_configs():
        config = load_run_config(name, ["data=somewhere"])
        assert config.input.size % 32 == 0
    lite = load_run_config("cpu-lite", ["data=x"])
    assert lite.model.encoder_weights == "imagenet-lite0"


def test_overrides_are_parsed_as_yaml() -> None:
    config = load_run_config(
        "synthetic-demo",
        [
            "data=d",
            "train.epochs=3",
            "model.decoder_channels=[32,32,16,16,8]",
            "model.encoder_weights=null",
            "optim.lr=5e-4",
        ],
    )
    assert config.train.epochs == 3 and config.model.decoder_channels == [32, 32, 16, 16, 8]
    assert config.model.encoder_weights is None and config.optim.lr == 5e-4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data=d", "train.epoch=3"], "train.epoch: unknown key; did you mean 'epochs'?"),
        (["data=d", "optim.learning_rate=1"], "optim.learning_rate: unknown key"),
        (["data=d", "input.size=250"], "input.size: Value error, must be a multiple of 32"),
        (["data=d", "train.epochs=many"], "train.epochs: Input should be a valid integer"),
        (["data=d", "loss.name=hinge"], "loss.name: Input should be"),
        ([], "data: Field required"),
        (["data=d", "epochs"], "expected key=value"),
        (["data=d", "train.epochs.x=1"], "epochs is not a section"),
    ],
)
def test_config_errors_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(DermasegError) as info:
        load_run_config("synthetic-demo", overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_config_files_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    with pytest.raises(DermasegError, match="invalid YAML at line"):
        load_run_config(str(bad_yaml))
    typed = tmp_path / "typed.yaml"
    typed.write_text("data: d\nmodel: resnet\n")
    with pytest.raises(DermasegError, match="model: Input should be a valid dictionary"):
        load_run_config(str(typed))
    with pytest.raises(DermasegError, match="no such config file or shipped recipe"):
        load_run_config("no-such-recipe")


def test_cli_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    result = run_cli("train", "--config", "synthetic-demo", "data=d", "train.epoch=1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: synthetic-demo (shipped recipe): train.epoch")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_train_without_the_extra_names_it() -> None:
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None; sys.argv = ['dermaseg', 'train', "
        "'--config', 'synthetic-demo']; from dermaseg.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert (
        "needs the [train] extra" in result.stderr
        and "pip install 'dermaseg[train]'" in result.stderr
    )
    assert "Traceback" not in result.stderr
