"""A cheap version of benchmarks/cli_fuzz.py: the same command-tree walk, fixtures and forked
runner over a handful of the hostile cases that once gave a traceback, a hang or a lost plan."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("onnx")  # the hostile models are built with onnx (the [train] extra)


def _load_fuzz():
    spec = importlib.util.spec_from_file_location("cli_fuzz", ROOT / "benchmarks" / "cli_fuzz.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cli_fuzz"] = module
    spec.loader.exec_module(module)
    return module


fuzz = _load_fuzz()


@pytest.fixture(scope="module")
def fx(tmp_path_factory: pytest.TempPathFactory):
    return fuzz.build_fixtures(tmp_path_factory.mktemp("fuzz"), with_torch=False)


def test_the_walk_finds_every_subcommand() -> None:
    tree = fuzz.command_tree()
    expected = {"plan", "compare", "data check", "data synth", "model info", "train", "eval"}
    assert expected | {"export"} <= set(tree)
    plan = {p.opts[0]: p.kind for p in tree["plan"]}
    assert plan["photos"] == "paths" and plan["--threads"] == "int" and plan["--json"] == "bool"


def test_every_command_has_a_baseline() -> None:
    """A new subcommand without a baseline in the fuzz fails here (and in the fuzz's check)."""
    assert fuzz.uncovered(fuzz.command_tree()) == []


def test_a_server_is_served_then_stopped_by_ctrl_c(fx) -> None:
    argv = ["review", fx.values["plans"], "--no-browser"]
    run = fuzz.run_forked(argv, timeout=120, serve=True)
    assert run.served and run.code == 0, (run.code, run.stderr[-2000:])
    assert fuzz.judge(fuzz.Case("review", "baseline", tuple(argv)), argv, run) == []
    assert "Review desk stopped" in run.stderr


PIPE = "not a regular file (a named pipe)"
DEEP = "nested too deeply"
# (command, what, arguments, exit code, a fragment of the one error line; for exit 1: of stderr)
CASES = [
    (
        "plan",
        "photos=hostile-folder",
        ["{hostile_folder}", "-m", "{model}", "--no-marker"],
        1,
        PIPE,
    ),
    ("plan", "photos=same-names", ["{same_names}", "-m", "{model}", "--no-marker"], 0, ""),
    ("plan", "--threads 100000", ["{photos}", "-m", "{model}", "--threads", "100000"], 2, "256"),
    (
        "plan",
        "--mm-per-pixel 1e308",
        ["{photos}", "-m", "{model}", "--mm-per-pixel", "1e308"],
        2,
        "10",
    ),
    (
        "plan",
        "--marker-dict",
        ["{photos}", "-m", "{model}", "--marker-dict", "DICT_NOPE"],
        2,
        "NOPE",
    ),
    (
        "plan",
        "--out below a file",
        ["{photos}", "-m", "{model}", "-o", "{below_a_file}"],
        2,
        "a file",
    ),
    (
        "plan",
        "--previous deep",
        ["{one_photo}", "-m", "{model}", "--previous", "{deep_plan}"],
        2,
        DEEP,
    ),
    ("plan", "--model FIFO", ["{photos}", "-m", "{fifo}"], 2, PIPE),
    ("plan", "--meta-csv FIFO", ["{photos}", "-m", "{model}", "--meta-csv", "{fifo}"], 2, PIPE),
    ("compare", "deep plan", ["{deep_plan}", "{plan_a}"], 2, DEEP),
    ("model info", "deep classes", ["{deep_classes}"], 2, DEEP),
    ("model info", "/dev/zero", ["{dev_zero}"], 2, "not a regular file (a character device)"),
    ("data check", "FIFO dataset YAML", ["{fifo}"], 2, PIPE),
    ("data synth", "--size 64", ["--out", "{out}", "--size", "64"], 2, "--size"),
]


@pytest.mark.parametrize(
    ("command", "what", "args", "code", "fragment"), CASES, ids=[c[1] for c in CASES]
)
def test_hostile_case(
    fx, command: str, what: str, args: list[str], code: int, fragment: str
) -> None:
    hostile = fx.hostile_paths
    values = {
        **fx.values,
        "hostile_folder": fx.photo_sets["hostile-folder"][0],
        "same_names": " ".join(fx.photo_sets["same-names-in-folders"]),
        "below_a_file": hostile["below-a-file"],
        "one_photo": fx.values["plan_photo"],
        "deep_plan": hostile["deep-plan.json"],
        "deep_classes": hostile["deep-classes-onnx"],
        "fifo": hostile["fifo"],
        "dev_zero": hostile["dev-zero"],
    }
    filled = []
    for arg in args:
        key = arg[1:-1] if arg.startswith("{") else None
        if key == "out":
            filled.append(fx.fresh("out"))
        elif key is not None:
            filled.extend(values[key].split(" "))
        else:
            filled.append(arg)
    if command == "plan":
        filled += ["-o", fx.fresh("plan")] if "-o" not in filled else []
        filled.append("--json")
    argv = [*command.split(), *filled]
    run = fuzz.run_forked(argv, timeout=60)
    case = fuzz.Case(command, what, tuple(argv))
    assert fuzz.judge(case, argv, run) == [], (run.code, run.stderr[-2000:])
    assert run.code == code, (run.code, run.stderr[-2000:])
    if code == 2:  # nothing could start: one line saying why, and nothing else
        assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    assert fragment in run.stderr, run.stderr
