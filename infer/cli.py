"""`dermaseg model ...`: inspect planning models (torch-free)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from dermaseg.console import out_console, print_json
from dermaseg.errors import shown
from dermaseg.infer.contract import KEY_CLASSES, KEY_METRICS, int8_sibling
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
    out = out_console  # results on stdout
    out.print(
        f"[bold]{escape(shown(details['path']))}[/]: dermaseg planning model, contract "
        f"{details['contract_version']}, working size {details['working_size']}"
    )
    out.print(
        f"precision {details['precision']}: {escape(details['precision_reason'])} "
        f"(CPU: {escape(details['cpu']['model'] or 'unknown')})"
    )
    io_table = Table("", "name", "type", "shape")
    for kind in ("inputs", "outputs"):
        for arg in details[kind]:
            io_table.add_row(kind[:-1], arg["name"], arg["type"], str(arg["shape"]))
    out.print(io_table)
    classes = Table("id", "class", "colour", "treatable")
    for c in details["classes"]:
        classes.add_row(
            str(c["id"]),
            escape(c["name"]),
            "#{:02x}{:02x}{:02x}".format(*c["color"]),
            "yes" if c["treatable"] else "no",
        )
    out.print(classes)
    metadata = dict(details["metadata"])
    metrics = metadata.pop(KEY_METRICS, None)
    if isinstance(metrics, dict):
        out.print(metrics_table(metrics))
    rest = Table("metadata", "value", title="Metadata", title_justify="left")
    rest.columns[1].overflow = "fold"
    for key, value in metadata.items():
        if key.startswith("dermaseg.") and key != KEY_CLASSES:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            rest.add_row(key.removeprefix("dermaseg."), escape(text))
    out.print(rest)


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-" if value is None else escape(str(value))
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def metrics_table(metrics: dict) -> Table:
    """Validation metrics as one table: a row per class (and one for the mean), a column per
    metric, whatever metrics the exporting dermaseg recorded."""
    per_class = metrics.get("per_class") if isinstance(metrics.get("per_class"), dict) else {}
    rows = {name: values for name, values in per_class.items() if isinstance(values, dict)}
    means = {k.removeprefix("mean_"): v for k, v in metrics.items() if k != "per_class"}
    columns = list(dict.fromkeys([*means, *(k for values in rows.values() for k in values)]))
    table = Table("class", *columns, title="Validation metrics", title_justify="left")
    table.add_row("[bold]mean[/]", *(_number(means.get(c)) for c in columns))
    for name, values in rows.items():
        table.add_row(escape(str(name)), *(_number(values.get(c)) for c in columns))
    return table
