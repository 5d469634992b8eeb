"""The `dermaseg` command: one entry point, subcommands grouped by what the user is doing."""

from __future__ import annotations

import inspect
import re
import sys

import typer
from typer import rich_utils

from dermaseg import __version__
from dermaseg.console import error_line
from dermaseg.datasets.cli import data_app
from dermaseg.errors import DermasegError, shown
from dermaseg.infer.cli import model_app
from dermaseg.infer.compare_cli import compare_command
from dermaseg.infer.plan_cli import plan_command, rank_command
from dermaseg.infer.review.cli import review_command
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
app.command("review", rich_help_panel="Clinic")(review_command)
app.add_typer(score_app, name="score", rich_help_panel="Clinic")
app.command("rank", rich_help_panel="Data")(rank_command)
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


def command() -> typer.core.TyperGroup:
    """The click command of `app`, its help made for reading: flags show no value type
    (typer prints `<bool>` as if they took one) and docstring paragraphs flow to the terminal's
    width (typer keeps their source line breaks, cutting sentences at 80 columns)."""
    group = typer.main.get_command(app)
    _tidy_help(group)
    return group


def _tidy_help(node) -> None:
    if node.help:
        node.help = _flow(node.help)
    for param in node.params:
        if getattr(param, "is_flag", False):
            param.metavar = ""
    make_help_option = node.get_help_option  # -h/--help is made per call, not in params

    def help_option(ctx, make=make_help_option):
        option = make(ctx)
        if option is not None:
            option.metavar = ""
        return option

    node.get_help_option = help_option
    for sub in getattr(node, "commands", {}).values():
        _tidy_help(sub)


def _flow(text: str) -> str:
    """Join the lines of each paragraph, keeping list items and \\b paragraphs as they are."""
    paragraphs = inspect.cleandoc(text).split("\n\n")
    flowed = []
    for paragraph in paragraphs:
        if paragraph.startswith("\b") or re.search(r"^\s*([-*]|\d+\.)\s", paragraph, re.M):
            flowed.append(paragraph)
        else:
            flowed.append(" ".join(line.strip() for line in paragraph.splitlines()))
    return "\n\n".join(flowed)


# click's base exception, from typer's own click (vendored since typer 0.2x) or the real one
ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


def main() -> None:
    """Console entry point: a user error (a bad option value too) is one line on stderr and
    exit code 2; a photo that fails in a batch is the command's exit code 1."""
    try:
        code = command().main(prog_name="dermaseg", standalone_mode=False)
    except ClickException as exc:  # a bad option or argument: one line saying which
        if type(exc).__name__ == "NoArgsIsHelpError":  # `dermaseg plan` alone: the help
            rich_utils.rich_format_error(exc)
            sys.exit(exc.exit_code)
        where = f" (see {exc.ctx.command_path} --help)" if getattr(exc, "ctx", None) else ""
        error_line(exc.format_message().replace("\n", " ") + where)
        sys.exit(exc.exit_code)
    except typer.Abort:
        error_line("aborted")
        sys.exit(1)
    except DermasegError as exc:
        error_line(str(exc))
        sys.exit(2)
    except OSError as exc:  # a path the OS refuses (name too long, permission...): say which
        where = f"{shown(exc.filename)}: " if exc.filename is not None else ""
        error_line(f"{where}{exc.strerror or exc}")
        sys.exit(2)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
