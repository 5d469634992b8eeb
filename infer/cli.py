"""`dermaseg model ...`: inspect planning models (torch-free)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, print_json
from dermaseg.infer.session import PlanningModel

model_app = typer.Typer(help="Inspect exported planning models.", no_args_is_help=True)


@model_app.command("info")
def info(
    model: Path = typer.Argument(..., help="A planning model (.onnx) made by `dermaseg export`."),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON on stdout."),
) -> None:
    """Contract version, inputs and outputs, classes and metadata of a planning model."""
    details = PlanningModel(model).info()
    if as_json:
        print_json(details)
        return
    err_console.print(
        f"[bold]{escape(details['path'])}[/]: dermaseg planning model, contract "
        f"{details['contract_version']}, working size {details['working_size']}"
    )
    io_table = Table("", "name", "type", "shape")
    for kind in ("inputs", "outputs"):
        for arg in details[kind]:
            io_table.add_row(kind[:-1], arg["name"], arg["type"], str(arg["shape"]))
    err_console.print(io_table)
    classes = Table("id", "class", "colour", "treatable")
    for c in details["classes"]:
        classes.add_row(
            str(c["id"]),
            c["name"],
            "#{:02x}{:02x}{:02x}".format(*c["color"]),
            "yes" if c["treatable"] else "no",
        )
    err_console.print(classes)
    for key, value in details["metadata"].items():
        if key.startswith("dermaseg.") and key not in ("dermaseg.classes",):
            err_console.print(f"{key}: {escape(str(value))[:300]}")
