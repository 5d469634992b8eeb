"""`dermaseg model ...`: inspect planning models (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import err_console, print_json
from dermaseg.infer import contract
from dermaseg.infer.contract import int8_sibling
from dermaseg.infer.precision import choose_precision, cpu_flags, cpu_model, int8_instructions
from dermaseg.infer.session import PlanningModel

model_app = typer.Typer(help="Inspect exported planning models.", no_args_is_help=True)


@model_app.command("info")
def info(
    model: Path = typer.Argument(..., help="A planning model (.onnx) made by `dermaseg export`."),
    precision: str = typer.Option(
        "auto", "--precision", help="As `plan --precision`: auto, fp32 or int8."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print everything as JSON on stdout."),
) -> None:
    """Contract version, inputs and outputs, classes, metadata of a planning model, and which
    precision `plan` runs on this CPU and why."""
    choice = choose_precision(model, precision)
    details = PlanningModel(choice.path, choice=choice).info()
    flags = cpu_flags()
    details["cpu"] = {
        "model": cpu_model(),
        "int8_dot_product": int8_instructions(flags),
        "avx2": "avx2" in flags,
        "avx512f": "avx512f" in flags,
    }
    sibling = int8_sibling(model)
    details["int8_model"] = str(sibling) if sibling.is_file() else None
    if as_json:
        print_json(details)
        return
    err_console.print(
        f"[bold]{escape(details['path'])}[/]: dermaseg planning model, contract "
        f"{details['contract_version']}, working size {details['working_size']}"
    )
    err_console.print(
        f"precision {details['precision']}: {escape(details['precision_reason'])} "
        f"(CPU: {escape(details['cpu']['model'] or 'unknown')})"
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
    metadata = details["metadata"]
    metrics = metadata.get(contract.KEY_METRICS)
    if isinstance(metrics, dict) and isinstance(metrics.get("per_class"), dict):
        table = Table("class", "Dice", "IoU", "boundary F1", title="validation metrics")
        for name, values in metrics["per_class"].items():
            table.add_row(name, *(_number(values.get(k)) for k in ("dice", "iou", "boundary_f1")))
        err_console.print(table)
    shown = (contract.KEY_CLASSES, contract.KEY_METRICS)
    for key, value in metadata.items():
        if key.startswith("dermaseg.") and key not in shown:
            text = json.dumps(value, separators=(", ", ": ")) if isinstance(value, dict) else value
            err_console.print(f"{key}: {escape(str(text))}")


def _number(value) -> str:
    return f"{value:.4f}" if isinstance(value, int | float) else "-"
