"""Rich renderables for the CLI's tables. Pure: data in, renderable out, nothing printed here."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from rich.table import Table
from rich.text import Text

from yolopatch.apply import Change
from yolopatch.channels import Shape
from yolopatch.modelyaml import ModelYaml
from yolopatch.report import ModelReport


def changes_table(changes: Sequence[Change]) -> Table:
    table = Table(title="Changed layers", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("was")
    table.add_column("now")
    for change in changes:
        table.add_row(str(change.index), Text(change.old), Text(change.row))
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
    for layer, shape in zip(model.layers, shapes, strict=True):
        table.add_row(
            str(layer.index),
            layer.section,
            _source(layer.source),
            str(layer.number),
            Text(layer.module),
            Text(model.text[layer.args_span.start : layer.args_span.end]),
            "-" if shape.c2 is None else str(shape.c2),
            _stride(shape.stride),
        )
    return table


def _source(source) -> str:
    return str(list(source)) if isinstance(source, (tuple, list)) else str(source)


def _stride(stride: Fraction | None) -> str:
    if stride is None:
        return "-"
    return str(stride.numerator) if stride.denominator == 1 else f"1/{stride.denominator}"


def report_table(report: ModelReport) -> Table:
    table = Table(title=f"{report.name} at --img {report.img}, batch {report.batch}", title_justify="left")
    for name, justify in [
        ("#", "right"),
        ("from", "right"),
        ("n", "right"),
        ("module", "left"),
        ("arguments", "left"),
        ("output", "left"),
        ("params", "right"),
        ("GFLOPs@640", "right"),
    ]:
        table.add_column(name, justify=justify)
    for layer in report.layers:
        module = f"{layer.module} *" if layer.involution else layer.module
        table.add_row(
            str(layer.index),
            _source(layer.source),
            str(layer.number),
            Text(module),
            Text(layer.args),
            layer.output,
            f"{layer.params:,}",
            f"{layer.gflops:.2f}",
            style="bold" if layer.involution else None,
        )
    return table


def summary_line(report: ModelReport, baseline: ModelReport | None = None) -> str:
    """YOLOv5's summary line, with a change against a baseline when given."""
    figures = [
        (report.modules, baseline.modules if baseline else None, "layers", "{:d}"),
        (report.params, baseline.params if baseline else None, "parameters", "{:d}"),
        (report.gradients, baseline.gradients if baseline else None, "gradients", "{:d}"),
        (report.gflops, baseline.gflops if baseline else None, "GFLOPs", "{:.1f}"),
    ]
    parts = []
    for value, base, label, fmt in figures:
        text = f"{fmt.format(value)} {label}"
        if base is not None:
            delta = value - base
            relative = f", {delta / base:+.1%}" if base else ""
            text += f" ({'+' if delta >= 0 else '-'}{fmt.format(abs(delta))}{relative})"
        parts.append(text)
    return f"{report.name} summary: " + ", ".join(parts)


def involution_note(report: ModelReport) -> str:
    if not report.aggregation_gflops:
        return ""
    return (
        f"* Involution layers. GFLOPs include their aggregation ({report.aggregation_gflops:.2f} GFLOPs at 640), "
        "which thop, YOLOv5's own summary and torch's FlopCounterMode leave out."
    )
