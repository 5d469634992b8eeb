"""The `dermaseg` command: one entry point, subcommands grouped by what the user is doing."""

from __future__ import annotations

import sys

import typer

from dermaseg import __version__
from dermaseg.console import error_line
from dermaseg.datasets.cli import data_app
from dermaseg.errors import DermasegError
from dermaseg.infer.cli import model_app
from dermaseg.infer.compare_cli import compare_command
from dermaseg.infer.plan_cli import plan_command
from dermaseg.infer.score_cli import score_app
from dermaseg.train.cli import eval_command, export_command, train_command

app = typer.Typer(
    name="dermaseg",
    help="Segment vitiligo, scars and thinning hair in clinical photos; plan micropigmentation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)
app.add_typer(data_app, name="data", rich_help_panel="Data")
app.command("train", rich_help_panel="Training (needs the \\[train] extra)")(train_command)
app.command("eval", rich_help_panel="Training (needs the \\[train] extra)")(eval_command)
app.command("export", rich_help_panel="Training (needs the \\[train] extra)")(export_command)
app.command("plan", rich_help_panel="Clinic")(plan_command)
app.command("compare", rich_help_panel="Clinic")(compare_command)
app.add_typer(score_app, name="score", rich_help_panel="Clinic")
app.add_typer(model_app, name="model", rich_help_panel="Clinic")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"dermaseg {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """dermaseg: photos in, treatment plans out."""


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    try:
        app()
    except DermasegError as exc:
        error_line(str(exc))
        sys.exit(2)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
