"""Packaging: one import package, torch-free clinic modules, help on every command."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import typer
from typer.core import TyperGroup

from dermaseg import __version__
from dermaseg.cli import app
from tests.conftest import run_cli


def test_wheel_installs_only_the_dermaseg_package(dermaseg_wheel: Path) -> None:
    names = zipfile.ZipFile(dermaseg_wheel).namelist()
    top_level = {n.split("/")[0] for n in names if not n.startswith("dermaseg-")}
    assert top_level == {"dermaseg"}
    for module in (
        "dermaseg/train/__init__.py",
        "dermaseg/infer/__init__.py",
        "dermaseg/datasets/__init__.py",
        "dermaseg/cli.py",
        "dermaseg/infer/review/static/app.js",  # the review desk's page is package data
        "dermaseg/infer/review/static/index.html",
    ):
        assert module in names
    assert not any(n.startswith("dermaseg/tests") for n in names)


def test_clinic_modules_never_import_torch() -> None:
    code = (
        "import pkgutil, importlib, sys\n"
        "import dermaseg.datasets, dermaseg.infer\n"
        "for pkg in (dermaseg.datasets, dermaseg.infer):\n"
        "    for m in pkgutil.iter_modules(pkg.__path__):\n"
        "        importlib.import_module(f'{pkg.__name__}.{m.name}')\n"
        "import dermaseg.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _command_paths(group: TyperGroup, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def test_help_on_every_command() -> None:
    root = typer.main.get_command(app)
    paths = _command_paths(root)
    assert ("data", "check") in paths and ("data", "synth") in paths
    for path in paths:
        result = run_cli(*path, "--help")
        assert result.returncode == 0, (path, result.stderr)
        assert "Usage" in result.stdout


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"dermaseg {__version__}"
