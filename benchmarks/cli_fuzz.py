"""Run every `dermaseg` subcommand over hostile arguments and files; count tracebacks, hangs,
crashes and lost plans (the target is 0 of each).

The command tree is walked from the typer app, so a new subcommand or option is fuzzed without
editing this file. Each parameter in turn gets the hostile values of its type (paths: a FIFO, a
symlink to /dev/zero, a sparse 6 GB file, JSON nested 100,000 deep, a pickle, an EPS, a name with
a newline...; numbers: inf, nan, 1e308, 1e-300, -1...; strings; repeated flags) while the others
keep a baseline that works. Each run is a forked child of this process (dermaseg already
imported: a fraction of a second a run, not a fresh interpreter) with stdin at /dev/null, killed
when it runs over the timeout.

A run fails the check with a traceback (`Traceback` on stderr or an exception escaping
`dermaseg.cli.main`), a hang (over the timeout), a crash (killed by a signal, or an exit code
other than 0, 1, 2, 130), or, for `plan`, a lost plan: a photo that is neither planned nor
reported, a plan JSON missing or holding another photo's sha256, or a plan that an earlier plan
of the same run replaced. A run over the timeout is run again alone in a fresh interpreter with
twice the time before it counts as a hang.

Every leaf command of the app is fuzzed; one without a working baseline below is reported as
`uncovered` (and fails the check), and each baseline is itself run first and must exit 0, so
that the hostile runs vary one argument of a command that otherwise works. A server command
(`review`: serves until Ctrl-C) gets SIGINT once it has printed its URL; a clean stop (exit 0 or
130, no traceback) passes, a server that never starts or does not stop is a hang.

    python benchmarks/cli_fuzz.py                 # everything (a few minutes on 2 cores)
    python benchmarks/cli_fuzz.py --only plan --only "model info" --timeout 30
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import hashlib
import io
import json
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import typer
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.hostile_corpus: the builders of hostile files

from dermaseg import cli  # noqa: E402
from tests.hostile_corpus import fake_planning_model, pickle_that_touches  # noqa: E402

DEEP = 100_000
OK_EXIT = {0, 1, 2, 130}
NUMBERS = ["inf", "-inf", "nan", "1e308", "-1e308", "1e-300", "-1", "0", "99999999999999999999"]
NUMBERS += ["abc", ""]
STRINGS = ["", " ", "\n", "x" * 5000, "DICT_NOPE", "{foo: 1}", "../../../etc/passwd", "-"]
# a string option may name a file (`train --config NAME|PATH`): these hostile files too
STRING_PATHS = ["fifo", "dev-zero", "sparse-6gb", "deep.yaml", "folder", "forged-name.json"]
# a file name that, printed unquoted, forges a line of its own
FORGED = "error: forged"
OVERRIDES = [
    "augment.pipeline={foo: 1}",
    "augment.pipeline={transform: {__class_fullname__: os.system}}",
    "augment.pipeline=" + "[" * DEEP,
    "train.epochs=inf",
    "train.epochs=-1",
    "input.size=1e308",
    "optim.lr=nan",
    "data=/dev/zero",
    "x.y.z=1",
    "=",
    "train=5",
    "model.encoder_weights={fifo}",
    "model.encoder_weights={sparse}",
]


# ---- the command tree ----------------------------------------------------------------------


@dataclass(frozen=True)
class Param:
    opts: tuple[str, ...]  # ("--out", "-o") for an option, ("photos",) for an argument
    kind: str  # path, paths, float, int, str, strs, bool
    is_argument: bool
    multiple: bool


def command_tree() -> dict[str, list[Param]]:
    """Every leaf command ("plan", "data check"...) and its parameters, from the typer app."""
    found: dict[str, list[Param]] = {}

    def walk(command, prefix: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
            return
        params = []
        for p in command.params:
            annotation = str(getattr(p.type_descriptor, "annotation", ""))
            is_flag = bool(getattr(p, "is_flag", False))
            kind = (
                "bool"
                if is_flag
                else "paths"
                if "list[pathlib.Path]" in annotation
                else "path"
                if "Path" in annotation
                else "float"
                if "float" in annotation
                else "int"
                if "int" in annotation
                else "strs"
                if "list[str]" in annotation
                else "str"
            )
            argument = not p.opts[0].startswith("-")
            params.append(Param(tuple(p.opts), kind, argument, bool(getattr(p, "multiple", 0))))
        found[" ".join(prefix)] = params

    walk(typer.main.get_command(cli.app), [])
    return found


# ---- fixtures: good inputs (the baselines) and hostile files --------------------------------


def _photo(path: Path, seed: int, suffix_format: str | None = None) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    rgb = np.asarray(Image.fromarray(small).resize((80, 64)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format=suffix_format)
    return path


def _mask(path: Path) -> Path:
    mask = np.zeros((64, 80), np.uint8)
    mask[10:40, 10:50] = 1
    mask[45:60, 60:75] = 2
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


@dataclass
class Fixtures:
    root: Path
    values: dict[str, str] = field(default_factory=dict)  # placeholders of the baselines
    hostile_paths: dict[str, str] = field(default_factory=dict)
    photo_sets: dict[str, list[str]] = field(default_factory=dict)  # plan photo arguments
    has_torch: bool = False
    runs: int = 0

    def fresh(self, name: str) -> str:
        """A new output path that does not exist yet."""
        self.runs += 1
        return str(self.root / "outs" / f"{name}-{self.runs}")


def build_fixtures(root: Path, with_torch: bool = True) -> Fixtures:
    fx = Fixtures(root)
    good = root / "good"
    photos = good / "photos"
    for i, name in enumerate(("x-2.jpg", "x.jpg", "x.png", "IMG_0001.jpg")):
        _photo(photos / name, i)
    model = fake_planning_model(good / "model.onnx")
    dataset = good / "dataset"
    for i in range(4):
        _photo(dataset / "images" / f"p{i}.png", 10 + i)
        _mask(dataset / "masks" / f"p{i}.png")
    plans = good / "plans"
    two = [str(photos / "x.jpg"), str(photos / "x.png")]
    run = run_forked(["plan", *two, "-m", str(model), "--no-marker", "-o", str(plans)], 120)
    assert run.code == 0, run.stderr
    fx.values.update(
        photos=str(photos),
        model=str(model),
        dataset=str(dataset),
        mask=str(_mask(good / "mask.png")),
        plan_a=str(plans / "x.plan.json"),
        plan_b=str(plans / "x-2.plan.json"),
        plan_photo=str(photos / "x.jpg"),
        plans=str(plans),
    )
    # photo arguments for plan: name clashes across folders, and a folder of hostile files
    clash = root / "clash"
    for i, rel in enumerate(("x/a.jpg", "y/a.jpg", "z/a-2.jpg", "p1/IMG_0001.jpg")):
        _photo(clash / rel, 20 + i)
    _photo(clash / "p2" / "IMG_0001.jpg", 30)
    hostile_folder = root / "hostile-photos"
    _photo(hostile_folder / "ok.jpg", 40)
    _photo(hostile_folder / "ok.JPG", 41)
    os.mkfifo(hostile_folder / "fifo.jpg")
    os.symlink("/dev/zero", hostile_folder / "zero.jpg")
    _sparse(hostile_folder / "sparse.jpg")
    _eps(hostile_folder / "eps.jpg")
    (hostile_folder / f"new\n{FORGED}.jpg").write_bytes(b"junk")
    fx.photo_sets = {
        "same-names-in-folders": [str(clash / d) for d in ("x", "y", "z", "p1", "p2")],
        "same-names-as-files": [str(clash / r) for r in ("x/a.jpg", "y/a.jpg", "z/a-2.jpg")],
        "hostile-folder": [str(hostile_folder)],
        "recursive": [str(clash), "--recursive"],
    }
    fx.hostile_paths = hostile_files(root / "hostile")
    fx.has_torch = with_torch and _try_torch_fixtures(fx, dataset)
    return fx


def _sparse(path: Path, size: int = 6 << 30) -> None:
    with path.open("wb") as handle:
        handle.truncate(size)


def _eps(path: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="EPS")
    path.write_bytes(buffer.getvalue())


def hostile_files(folder: Path) -> dict[str, str]:
    """Named hostile paths, each usable where a command expects a file."""
    folder.mkdir(parents=True)
    deep = "[" * DEEP + "]" * DEEP
    files = {
        "empty.json": b"",
        "junk.bin": os.urandom(4096),
        "deep.json": deep.encode(),
        "deep.yaml": ("a: " + "[" * DEEP).encode(),
        "nan.json": b'{"a": NaN, "b": Infinity}',
        "pickle.pt": pickle_that_touches(folder / "PICKLE_RAN"),
        "deep-plan.json": ('{"photo": ' + deep + "}").encode(),
        "utf16.yaml": "data: x\n".encode("utf-16"),
    }
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = str(folder / name)
    (folder / f"new\n{FORGED}.json").write_bytes(b"{}")
    os.mkfifo(folder / "fifo.json")
    os.symlink("/dev/zero", folder / "zero.json")
    _sparse(folder / "sparse.json")
    (folder / "a-folder").mkdir()
    _eps(folder / "eps.png")
    deep_classes = "[" * 200_000 + "]" * 200_000
    fake_planning_model(folder / "deep-classes.onnx", metadata={"dermaseg.classes": deep_classes})
    fake_planning_model(folder / "deep-meta.onnx", metadata={"dermaseg.extra": deep_classes})
    _version_1_checkpoint(folder / "deep-sidecar", "[" * 50_000 + "]" * 50_000)
    paths.update(
        {
            "forged-name.json": str(folder / f"new\n{FORGED}.json"),
            "fifo": str(folder / "fifo.json"),
            "dev-zero": str(folder / "zero.json"),
            "sparse-6gb": str(folder / "sparse.json"),
            "folder": str(folder / "a-folder"),
            "missing": str(folder / "missing.json"),
            "below-a-file": str(folder / "junk.bin" / "x"),
            "dev-null": "/dev/null",
            "eps": str(folder / "eps.png"),
            "deep-classes-onnx": str(folder / "deep-classes.onnx"),
            "deep-meta-onnx": str(folder / "deep-meta.onnx"),
            "deep-sidecar-ckpt": str(folder / "deep-sidecar.safetensors"),
        }
    )
    return paths


def _version_1_checkpoint(stem: Path, nested_meta: str) -> None:
    """A format-1 checkpoint (weights + JSON sidecar) whose sidecar nests 50,000 deep."""
    from safetensors.numpy import save

    weights = save({"w": np.zeros(2, np.float32)})
    stem.with_name(stem.name + ".safetensors").write_bytes(weights)
    sidecar = (
        '{"format": "dermaseg-checkpoint", "format_version": 1, "sha256": {"weights": "'
        + hashlib.sha256(weights).hexdigest()
        + '"}, "meta": '
        + nested_meta
        + "}"
    )
    stem.with_name(stem.name + ".json").write_text(sidecar)


def _try_torch_fixtures(fx: Fixtures, dataset: Path) -> bool:
    """A tiny checkpoint and training config, when the [train] extra is installed. The
    checkpoint is made in a subprocess: torch's threads in this process would deadlock the
    forked runs (a lock held by a thread at fork time is never released in the child)."""
    import subprocess

    checkpoint = fx.root / "ckpt"
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "from tests.conftest import make_tiny_checkpoint; "
        "print(make_tiny_checkpoint(Path(sys.argv[2])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), str(checkpoint)], capture_output=True, text=True
    )
    if done.returncode != 0:
        return False  # no torch: train, eval and export are not fuzzed
    fx.values["checkpoint"] = done.stdout.strip().splitlines()[-1]
    config = fx.root / "tiny.yaml"
    config.write_text(
        f"name: tiny\ndata: {dataset}\nruns_dir: {fx.root / 'runs'}\n"
        "model: {encoder_weights: null, decoder_channels: [16, 16, 16, 16, 8]}\n"
        "input: {size: 64}\ntrain: {epochs: 1, batch_size: 2, workers: 0, overlay_every: 0}\n"
    )
    fx.values["train_config"] = str(config)
    return True


def os_threads() -> int:
    """Threads of this process as the OS counts them (torch's and onnxruntime's included)."""
    status = Path("/proc/self/status")
    if not status.exists():
        return 1
    line = next(x for x in status.read_text().splitlines() if x.startswith("Threads:"))
    return int(line.split()[1])


# ---- cases ------------------------------------------------------------------------------------

BASELINES = {
    "plan": ["{photos}", "--model", "{model}", "--no-marker", "-o", "{out}", "--json"],
    "compare": ["{plan_a}", "{plan_b}"],
    "data check": ["{dataset}"],
    "data synth": ["--out", "{out}", "--n", "1", "--size", "96"],
    "model info": ["{model}"],
    "train": ["--config", "{train_config}"],
    "eval": ["{checkpoint}", "--data", "{dataset}"],
    "export": ["{checkpoint}", "--out", "{out}/model.onnx", "--working-size", "96"],
    "score fvasi": ["{plan_photo}", "--model", "{model}", "--mm-per-pixel", "0.1"],
    "score salt": [
        *("--top", "{plan_photo}", "--back", "{plan_photo}"),
        *("--left", "{plan_photo}", "--right", "{plan_photo}"),
        *("--model", "{model}", "--no-marker"),
    ],
    "rank": ["{photos}", "--model", "{model}", "-o", "{out}"],
    "review": ["{plans}", "--no-browser"],
}
NEEDS_TORCH = {"train", "eval", "export"}
# commands that serve until Ctrl-C once they print their URL on stdout
SERVERS = {"review"}
SERVING = "http://127.0.0.1:"


@dataclass(frozen=True)
class Case:
    command: str
    what: str  # which parameter and value, for the report
    args: tuple[str, ...]


def _values_for(param: Param, fx: Fixtures) -> Iterator[tuple[str, list[str]]]:
    """(label, argument values) pairs of hostile values for one parameter."""
    if param.kind in ("path", "paths"):
        for name, path in fx.hostile_paths.items():
            yield name, [path]
    elif param.kind in ("float", "int"):
        for value in NUMBERS:
            yield repr(value), [value]
    elif param.kind == "strs":
        for value in OVERRIDES:
            filled = value.replace("{fifo}", fx.hostile_paths["fifo"])
            filled = filled.replace("{sparse}", fx.hostile_paths["sparse-6gb"])
            yield repr(filled[:40]), [filled]
    elif param.kind == "str":
        for value in STRINGS:
            yield repr(value[:20]), [value]
        for name in STRING_PATHS:
            yield name, [fx.hostile_paths[name]]


def _with_param(baseline: list[str], param: Param, values: list[str], index: int) -> list[str]:
    """The baseline with `param` (the `index`-th positional argument, for an argument) set to
    `values`, replacing its baseline value if it has one."""
    args = list(baseline)
    if param.is_argument:
        positions = [
            i for i, a in enumerate(args) if a.startswith("{") and not args[i - 1].startswith("-")
        ]
        if index >= len(positions):
            return [*args, *values]
        at = positions[index]
        return args[:at] + values + args[at + 1 :]
    for opt in param.opts:
        if opt in args:
            i = args.index(opt)
            return args[: i + 1] + values[:1] + args[i + 2 :]
    return [*args, param.opts[0], *values]


def cases(tree: dict[str, list[Param]], fx: Fixtures, only: list[str]) -> list[Case]:
    found: list[Case] = []
    order = only or list(tree)  # --only also gives the order
    for command in order:
        params = tree[command]
        if command in NEEDS_TORCH and not fx.has_torch:
            continue
        if command not in BASELINES:
            continue  # reported as uncovered by `uncovered`
        baseline = BASELINES[command]
        words = command.split()
        found.append(Case(command, "baseline", (*words, *baseline)))
        found.append(Case(command, "no arguments", (*words,)))
        found.append(Case(command, "--help", (*words, "--help")))
        found.append(Case(command, "unknown option", (*words, *baseline, "--no-such-option")))
        arguments = [p for p in params if p.is_argument]
        for param in params:
            flag = param.opts[0]
            if param.kind == "bool":
                found.append(Case(command, f"{flag} true", (*words, *baseline, flag, "true")))
                found.append(Case(command, f"{flag} twice", (*words, *baseline, flag, flag)))
                continue
            index = arguments.index(param) if param.is_argument else 0
            for label, values in _values_for(param, fx):
                args = _with_param(baseline, param, values, index)
                found.append(Case(command, f"{flag}={label}", (*words, *args)))
        if command == "plan":
            photos_param = Param(("photos",), "paths", True, False)
            for label, photos in fx.photo_sets.items():
                args = _with_param(baseline, photos_param, photos, 0)
                found.append(Case(command, f"photos={label}", (*words, *args)))
                if label == "same-names-in-folders":  # twice into one --out, then --overwrite
                    twice = (*words, *args, "-o", "{last_out}")
                    found.append(Case(command, "same out, first run", twice))
                    found.append(Case(command, "same out, rerun", twice))
                    found.append(Case(command, "same out, --overwrite", (*twice, "--overwrite")))
    return found


def uncovered(tree: dict[str, list[Param]]) -> list[str]:
    """Commands of the app that have no baseline here, so only their usage errors would be
    fuzzed: each one fails the check until it gets a baseline."""
    return sorted(set(tree) - set(BASELINES))


def fill(args: tuple[str, ...], fx: Fixtures, command: str) -> list[str]:
    """The case's arguments with the placeholders ({model}, {out}...) filled in; `{out}` is a
    new folder for each run, `{last_out}` one folder shared by the runs that name it."""
    values = {
        **fx.values,
        "out": fx.fresh(command.replace(" ", "-")),
        "last_out": str(fx.root / "outs" / "shared"),
    }
    filled = []
    for arg in args:
        for key, value in values.items():
            arg = arg.replace("{" + key + "}", value)
        filled.append(arg)
    if "-o" in filled and filled.count("-o") > 1:  # the last -o wins: drop the earlier ones
        first = filled.index("-o")
        del filled[first : first + 2]
    return filled


# ---- running one case in a forked child -------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """What one run did: exit code (None: killed at the timeout, a hang; -N: killed by signal
    N; 99: an exception escaped `main`), its output, and for a server whether it served (printed
    its URL) and was then stopped with SIGINT."""

    code: int | None
    stdout: str
    stderr: str
    served: bool = False


def _supervise(pid: int, out_fd: int, timeout: float, serve: bool, grace: float) -> tuple:
    """Wait for process `pid` (a process group leader) to exit, at most `timeout` seconds.
    With `serve`, send it SIGINT once its stdout (`out_fd`) shows the server's URL and give it
    `grace` seconds to stop. Returns (exit code or None when killed, served)."""
    try:
        return _wait(pid, out_fd, timeout, serve, grace)
    except BaseException:  # the fuzz is stopped: no run left behind
        with contextlib.suppress(OSError):
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        raise


def _wait(pid: int, out_fd: int, timeout: float, serve: bool, grace: float) -> tuple:
    deadline = time.monotonic() + timeout
    served = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status), served
        if serve and not served and SERVING in os.pread(out_fd, 1 << 16, 0).decode("latin-1"):
            time.sleep(1.0)  # serving: a moment to settle, then Ctrl-C
            served = True
            os.killpg(pid, signal.SIGINT)
            deadline = time.monotonic() + grace
        if time.monotonic() >= deadline:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None, served
        time.sleep(0.02)


def run_forked(args: list[str], timeout: float, serve: bool = False, grace: float = 60.0) -> Run:
    """`dermaseg ARGS` in a forked child of this process (see `Run`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            code = 98
            try:
                os.setpgid(0, 0)
                os.environ["BROWSER"] = "true"  # a server asked to open a browser opens none
                stdin = os.open(os.devnull, os.O_RDONLY)
                os.dup2(stdin, 0)
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                # the file descriptors, whatever replaced sys.stdout (pytest's capture...)
                sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
                sys.argv = ["dermaseg", *args]
                try:
                    cli.main()
                    code = 0
                except SystemExit as exc:
                    code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
                except BaseException:
                    traceback.print_exc()
                    code = 99
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
        with contextlib.suppress(OSError):  # the child did it already, or exited
            os.setpgid(pid, pid)  # also here: the child may not have run yet at a SIGINT
        code, served = _supervise(pid, out.fileno(), timeout, serve, grace)
        return Run(code, _read(out), _read(err), served)


def _read(handle) -> str:
    handle.seek(0)
    return handle.read().decode("utf-8", "replace")


def run_fresh(args: list[str], timeout: float, serve: bool = False, grace: float = 60.0) -> Run:
    """The same as `run_forked`, in a new `python -m dermaseg` process (slower to start)."""
    import subprocess

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        child = subprocess.Popen(
            [sys.executable, "-m", "dermaseg", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
            env={**os.environ, "BROWSER": "true"},
        )
        code, served = _supervise(child.pid, out.fileno(), timeout, serve, grace)
        child.returncode = code  # reaped by _supervise
        return Run(code, _read(out), _read(err), served)


# ---- judging a run ----------------------------------------------------------------------------


def lost_plans(args: list[str], stdout: str, code: int | None) -> list[str]:
    """For a plan run with --json: photos lost or plans clobbered (empty when all is well)."""
    if code not in (0, 1) or "--json" not in args or "--schema" in args:
        return []
    try:
        summary = json.loads(stdout)
    except ValueError:
        return ["exit 0/1 but no JSON summary on stdout"]
    problems = []
    seen: dict[str, str] = {}
    for item in summary["planned"]:
        plan_path = Path(item["outputs"]["plan"])
        if plan_path in seen:
            problems.append(f"{item['photo']} and {seen[plan_path]} share {plan_path}")
        seen[plan_path] = item["photo"]
        if not plan_path.is_file():
            problems.append(f"{item['photo']}: plan {plan_path} missing")
            continue
        plan = json.loads(plan_path.read_text(encoding="utf-8"))
        digest = hashlib.sha256(Path(item["photo"]).read_bytes()).hexdigest()
        if plan["photo"]["sha256"] != digest:
            problems.append(f"{item['photo']}: {plan_path} holds another photo's plan")
    reported = {item["photo"] for key in ("planned", "failed", "skipped") for item in summary[key]}
    if code == 0 and summary["failed"]:
        problems.append("exit 0 with failures")
    expected = _photos_of(args)
    missing = sorted(expected - reported)
    if missing:
        problems.append(f"neither planned nor reported: {missing[:3]}")
    return problems


def _photos_of(args: list[str]) -> set[str]:
    from dermaseg.infer.inputs import collect_photos

    i = args.index("plan") + 1
    photos = []
    while i < len(args) and not args[i].startswith("-"):
        photos.append(Path(args[i]))
        i += 1
    out = Path(args[args.index("-o") + 1]) if "-o" in args else None
    items = collect_photos(photos, recursive="--recursive" in args, out_dir=out)
    return {str(item.path) for item in items}


def judge(case: Case, args: list[str], run: Run) -> list[str]:
    findings = []
    code, stderr = run.code, run.stderr
    if code is None:
        findings.append("hang")
    elif code == 99 or "Traceback (most recent call last)" in stderr:
        findings.append("traceback")
    elif code not in OK_EXIT:
        findings.append("crash")
    if (
        case.what == "baseline"
        and code is not None
        and (code != 0 and not (run.served and code == 130))
    ):
        findings.append(f"baseline failed: exit {code}")
    if case.what == "baseline" and case.command in SERVERS and not run.served:
        findings.append("baseline failed: the server never printed its URL")
    if any(line.startswith(FORGED) for line in (run.stdout + run.stderr).splitlines()):
        findings.append("forged line: a file name printed with its newline")
    if case.command == "plan":
        findings += [f"lost plan: {p}" for p in lost_plans(args, run.stdout, code)]
    return findings


KINDS = ("traceback", "hang", "crash", "lost plan", "forged line", "baseline failed")


def run_case(case: Case, args: list[str], limit: float, tally: collections.Counter) -> Run:
    """One case, forked; a run over the time limit is run again alone in a fresh interpreter
    (a forked child can inherit a lock held by another thread) with twice the time, and counts
    as a hang only if it is over the limit there too."""
    serve = case.command in SERVERS
    run = run_forked(args, limit, serve=serve)
    if run.code is None:
        run = run_fresh(args, 2 * limit, serve=serve)
        tally["hang in fork only" if run.code is not None else "hang confirmed alone"] += 1
    tally["served, stopped by SIGINT"] += run.served
    return run


def report(counts: dict[str, collections.Counter], tree: dict, missing: list[str]) -> int:
    """The table of runs and findings per command; the number of failed checks."""
    header = f"{'command':<12} {'runs':>5} {'exit 0':>7} {'exit 1':>7} {'exit 2':>7} {'other':>6} "
    print(header + " ".join(f"{k:>11}" for k in KINDS[:5]) + " baseline")
    total: collections.Counter = collections.Counter()
    for command in sorted(counts):
        tally = counts[command]
        total.update(tally)
        ok = "ok" if not tally["baseline failed"] else "FAILED"
        print(
            f"{command:<12} {tally['runs']:>5} {tally['exit 0']:>7} {tally['exit 1']:>7} "
            f"{tally['exit 2']:>7} {tally['exit other']:>6} "
            + " ".join(f"{tally[k]:>11}" for k in KINDS[:5])
            + f" {ok}"
        )
    print(
        f"{'all':<12} {total['runs']:>5} {total['exit 0']:>7} {total['exit 1']:>7} "
        f"{total['exit 2']:>7} {total['exit other']:>6} "
        + " ".join(f"{total[k]:>11}" for k in KINDS[:5])
    )
    print(f"commands in the app: {len(tree)}; fuzzed: {len(counts)}; uncovered: {missing or 0}")
    print(
        f"server runs that served and stopped cleanly on SIGINT: "
        f"{total['served, stopped by SIGINT']}; runs over the timeout when forked but not alone "
        f"in a fresh interpreter (not hangs): {total['hang in fork only']}"
    )
    return sum(total[k] for k in KINDS) + len(missing)


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def fuzz_one(case: Case, fx: Fixtures, options, tally, failures: list[str], where: str) -> None:
    """Run one case and count it in `tally`; findings go to `failures` and stderr."""
    args = fill(case.args, fx, case.command)
    t0 = time.perf_counter()
    limit = options.torch_timeout if case.command in NEEDS_TORCH else options.timeout
    run = run_case(case, args, limit, tally)
    tally["runs"] += 1
    tally[f"exit {run.code}" if run.code in (0, 1, 2) else "exit other"] += 1
    for finding in judge(case, args, run):
        kind = next(k for k in KINDS if finding.startswith(k))
        tally[kind] += 1
        tail = (run.stderr.strip().splitlines() or [""])[-1][:160]
        failures.append(f"{case.command} {case.what}: {finding} (exit {run.code}) {tail!r}")
        print(f"{where} FAIL {failures[-1]}", file=sys.stderr, flush=True)
    took = time.perf_counter() - t0
    if took > 20:
        print(f"{where} slow ({took:.0f} s): {case.command} {case.what}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=90.0, help="Seconds a run may take.")
    parser.add_argument(
        "--torch-timeout", type=float, default=300.0, help="The same for train, eval, export."
    )
    parser.add_argument(
        "--only", action="append", default=[], help="Fuzz this command only (repeat: in order)."
    )
    parser.add_argument("--keep", action="store_true", help="Keep the scratch folder.")
    options = parser.parse_args()
    os.environ.setdefault("COLUMNS", "100")
    root = Path(tempfile.mkdtemp(prefix="dermaseg-fuzz-"))
    started = time.perf_counter()
    wants_torch = not options.only or bool(NEEDS_TORCH & set(options.only))
    fx = build_fixtures(root, with_torch=wants_torch)
    if fx.has_torch:  # imported once here, not in every run (no tensor op: no thread pool yet)
        import dermaseg.train.evaluate
        import dermaseg.train.export
        import dermaseg.train.trainer  # noqa: F401
    tree = command_tree()
    if set(options.only) - set(tree):
        parser.error(f"--only: no command {sorted(set(options.only) - set(tree))}")
    missing = uncovered(tree)
    todo = cases(tree, fx, options.only)
    print(
        f"{len(tree)} commands, {len(todo)} runs; scratch folder {root}; torch: {fx.has_torch}; "
        f"{os_threads()} threads here before forking (numpy's BLAS pool; no torch)",
        file=sys.stderr,
    )
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    failures: list[str] = []
    signal.signal(signal.SIGTERM, _stop)  # a stopped fuzz still reports what it ran
    done = 0
    try:
        for done, case in enumerate(todo, 1):
            fuzz_one(case, fx, options, counts[case.command], failures, f"[{done}/{len(todo)}]")
            if done == len(todo) or todo[done].command != case.command:
                tally = counts[case.command]
                print(
                    f"{f'[{done}/{len(todo)}]'} {case.command}: {tally['runs']} runs, "
                    + ", ".join(f"{k} {tally[k]}" for k in KINDS)
                    + f"; {time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    except KeyboardInterrupt:
        print(f"stopped after {done - 1} of {len(todo)} runs", file=sys.stderr)
        print(f"STOPPED after {done - 1} of {len(todo)} runs: the table counts those only")
    bad = report(counts, tree, missing)
    print(f"pickle payload ran: {(root / 'hostile' / 'PICKLE_RAN').exists()}")
    from visit_scores_accuracy import cpu  # this folder's lscpu summary

    print(f"{time.perf_counter() - started:.0f} s on {cpu()}, {os.cpu_count()} cores")
    for line in failures:
        print(line)
    if not options.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
