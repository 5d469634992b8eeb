"""The README's command blocks as written.

Every `dermaseg` line in a bash block must name a real command with real options (and, for
`train`, config keys the recipe knows). The lines that need no trained model and no minutes of
training run for real, in order, in a scratch folder: `data synth`, `data check`, `plan --schema`
and `plan` from a drawn mask. The rest (training, a model, a server, two visits) are checked for
their command and options only; `make demo` runs the training path end to end.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dermaseg.cli import command
from dermaseg.train.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def readme_commands() -> list[str]:
    """Each `dermaseg ...` command of the README's bash blocks: continuations joined, comments
    and a `torchrun ... -m` prefix dropped."""
    commands = []
    text = README.read_text(encoding="utf-8")
    for block in re.findall(r"^```bash\n(.*?)^```", text, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            line = re.sub(r"^torchrun .*?-m dermaseg ", "dermaseg ", line)
            if line.startswith("dermaseg "):
                commands.append(line)
    return commands


def _tokens(line: str) -> list[str]:
    """The words after `dermaseg`, optional parts (`[--json]`) taken as given, `...` dropped."""
    line = re.sub(r"\[(--[^\]]*)\]", r"\1", line)
    return [w for w in shlex.split(line)[1:] if w != "..."]


def _resolve(words: list[str]):
    """The click command the words name, and the words left for it."""
    node = command()
    while words and hasattr(node, "commands") and words[0] in node.commands:
        node, words = node.commands[words[0]], words[1:]
    return node, words


COMMANDS = readme_commands()
RUN_FOR_REAL = re.compile(r"^dermaseg (data synth|data check|plan --schema|plan \S+ --mask )")


def test_the_readme_has_commands_of_every_group() -> None:
    assert len(COMMANDS) >= 30
    named = {" ".join(shlex.split(c)[1:3]) for c in COMMANDS}
    for expected in ("data check", "data synth", "model info", "score salt"):
        assert expected in named
    assert sum(bool(RUN_FOR_REAL.match(c)) for c in COMMANDS) >= 6


@pytest.mark.parametrize("line", COMMANDS)
def test_command_and_options_exist(line: str) -> None:
    node, words = _resolve(_tokens(line))
    assert not hasattr(node, "commands"), f"{line}: no such command"
    known = {opt for param in node.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"--help", "-h"}
    for word in words:
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"{line}: {word} is not an option of it"
    if node.name == "train" and "--config" in words:
        spec = words[words.index("--config") + 1]
        overrides = [w for w in words if "=" in w and not w.startswith("-")]
        if spec.endswith((".yaml", ".yml")):  # the user's own recipe: shaped like cpu-lite
            spec, overrides = "cpu-lite", ["data=path/to/dataset", *overrides]
        load_run_config(spec, overrides)  # unknown keys or bad values raise


def test_the_commands_that_need_no_model_run_as_written(tmp_path: Path) -> None:
    """In README order, in one scratch folder; `path/to/dataset` is the synthetic set, and
    `photo.jpg` / `corrected.png` one of its photos and masks."""
    runnable = [c for c in COMMANDS if RUN_FOR_REAL.match(c)]
    assert runnable[0].startswith("dermaseg data check path/to/dataset")
    synth = next(c for c in runnable if c.startswith("dermaseg data synth"))
    runnable = [synth] + [c for c in runnable if c != synth]
    env = {**os.environ, "COLUMNS": "100"}
    dermaseg = [sys.executable, "-m", "dermaseg"]
    for line in runnable:
        if line == runnable[1]:  # after `data synth`: the placeholders the others name
            data = tmp_path / "data" / "synth"
            (tmp_path / "path" / "to").mkdir(parents=True)
            (tmp_path / "path" / "to" / "dataset").symlink_to(data, target_is_directory=True)
            shutil.copy(data / "images" / "synth_00000.jpg", tmp_path / "photo.jpg")
            shutil.copy(data / "masks" / "synth_00000.png", tmp_path / "corrected.png")
            photos = json.loads((data / "manifest.json").read_text())["photos"]
            (tmp_path / "my-skin-photos").mkdir()
            for entry in [p for p in photos if p["kind"] == "skin"][:3]:
                shutil.copy(data / entry["image"], tmp_path / "my-skin-photos")
        done = subprocess.run(
            dermaseg + _tokens(line), cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{line}: exit {done.returncode}\n{done.stderr[-2000:]}"
        assert "Traceback" not in done.stderr
        assert done.stdout.strip(), f"{line}: printed no result on stdout"
    assert len(list((tmp_path / "data" / "synth" / "images").glob("*.jpg"))) == 200
    assert (tmp_path / "plans" / "photo.plan.json").is_file()
