"""Rich renderables for the CLI's tables. Pure: data in, renderable out, nothing printed here."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from rich.table import Table

from yolopatch.apply import Change
from yolopatch.channels import Shape
from yolopatch.modelyaml import ModelYaml


def changes_table(changes: Sequence[Change]) -> Table:
    table = Table(title="Changed layers", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("was")
    table.add_column("now")
    for change in changes:
        table.add_row(str(change.index), change.old, change.row)
    return table


def layers_table(model: ModelYaml, shapes: Sequence[Shape]) -> Table:
    table = Table(title="Layers (use these indices with --layers)", title_justify="left")
    for name, justify in [
        ("#", "right"),
        ("section", "left"),
        ("from", "right"),
        ("n", "right"),
        ("module", "left"),
        ("args", "left"),
        ("out ch", "right"),
        ("stride", "right"),
    ]:
        table.add_column(name, justify=justify)
    for layer, shape in zip(model.layers, shapes):
        table.add_row(
            str(layer.index),
            layer.section,
            str(list(layer.source) if isinstance(layer.source, tuple) else layer.source),
            str(layer.number),
            layer.module,
            model.text[layer.args_span.start : layer.args_span.end],
            "-" if shape.c2 is None else str(shape.c2),
            _stride(shape.stride),
        )
    return table


def _stride(stride: Fraction | None) -> str:
    if stride is None:
        return "-"
    return str(stride.numerator) if stride.denominator == 1 else f"1/{stride.denominator}"
