"""A model's tables and lines: what apply changed, its layers, check's per-layer table and summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from yolopatch.channels import Shape
from yolopatch.edit.options import Change
from yolopatch.modelyaml import Layer
from yolopatch.operators.registry import OPERATORS

if TYPE_CHECKING:
    from yolopatch.report import ExportReport
from yolopatch.render.layout import Column, fitted
from yolopatch.report import ModelReport


def changes_table(changes: Sequence[Change] | Sequence[Any]) -> Table:
    """What `apply` changed (a yaml's rows or another format's sections: index, old, row)."""
    table = Table(title="Changed layers", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("was")
    table.add_column("now")
    for change in changes:
        table.add_row(str(change.index), Text(change.old), Text(change.row))
    return table


def layers_table(layers: Sequence[Layer], shapes: Mapping[str, Sequence[Shape]], width: int = 100) -> Table:
    """One row per layer; output channels at each scale ("out ch" alone for a file without scales),
    fitted to `width` (section, n, args and from give way, in that order)."""
    columns = [
        Column("#", "right"),
        Column("section", drop=1),
        Column("from", "right", drop=4, wrap=True),
        Column("n", "right", drop=2),
        Column("module"),
        Column("args", drop=3, wrap=True),
        *(Column(f"out ch\n{scale}" if scale else "out ch", "right") for scale in shapes),
        Column("stride", "right"),
    ]
    first = next(iter(shapes.values()))
    assumed = any(shape.c2_assumed or shape.stride_assumed for shape in first)
    caption = (
        "? an assumption: it rests on a module yolopatch does not know (see the notes)" if assumed else None
    )
    rows = [
        (
            [
                str(layer.index),
                layer.section,
                _source(layer.source),
                str(layer.number),
                layer.module,
                layer.args_text,
                *(_channels(per_scale[row]) for per_scale in shapes.values()),
                "?" if first[row].stride_assumed else _stride(first[row].stride),
            ],
            None,
        )
        for row, layer in enumerate(layers)
    ]
    title = "Layers (use these indices with --layers)"
    return fitted(
        columns, rows, width, title=title, title_justify="left", caption=caption, caption_justify="left"
    )


def inputs_lines(layers: Sequence[Layer], shapes: Mapping[str, Sequence[Shape]]) -> list[str]:
    """What each row that reads several layers (a Concat, a fusion row) gets: every input's channels (at
    each scale) and stride, for choosing a fusion operator's rows and --from."""
    first = next(iter(shapes.values()))
    scales = "/".join(shapes) if len(shapes) > 1 else ""
    lines = []
    for layer in layers:
        if isinstance(layer.source, int) or first[layer.index].c2 is None:
            continue  # one input, or a head
        inputs = [layer.index + f if f < 0 else f for f in layer.source]
        parts = [
            f"{i}: {'/'.join(_channels(per_scale[i]) for per_scale in shapes.values())} ch, stride "
            f"{_stride(first[i].stride)}"
            for i in inputs
        ]
        lines.append(f"  {layer.index} {layer.module} reads {'; '.join(parts)}")
    if not lines:
        return []
    return [f"Rows that read several layers{f' (channels at {scales})' if scales else ''}:", *lines]


def _channels(shape: Shape) -> str:
    return "-" if shape.c2 is None else f"{shape.c2}{'?' if shape.c2_assumed else ''}"


def _source(source) -> str:
    return str(list(source)) if isinstance(source, (tuple, list)) else str(source)


def _stride(stride: Fraction | None) -> str:
    if stride is None:
        return "-"
    return str(stride.numerator) if stride.denominator == 1 else f"1/{stride.denominator}"


def report_table(report: ModelReport, width: int = 100) -> Table:
    """The per-layer table of `check`, fitted to `width` (n, arguments, output and from give way)."""
    columns = [
        Column("#", "right"),
        Column("from", "right", drop=4, wrap=True),
        Column("n", "right", drop=1),
        Column("module"),
        Column("arguments", drop=2, wrap=True),
        Column("output", drop=3),
        Column("params", "right"),
        Column("GFLOPs@640", "right"),
    ]
    rows = [
        (
            [
                str(layer.index),
                _source(layer.source),
                str(layer.number),
                f"{layer.module} *" if layer.operator else layer.module,
                layer.args,
                layer.output.replace("], [", "],\n["),  # one tensor a line (Detect's outputs)
                f"{layer.params:,}",
                f"{layer.gflops:.2f}",
            ],
            "bold" if layer.operator else None,
        )
        for layer in report.layers
    ]
    title = f"{report.name} at --img {report.img}, batch {report.batch}"
    return fitted(columns, rows, width, title=title, title_justify="left")


def summary_line(report: ModelReport, baseline: ModelReport | None = None) -> str:
    """The targets' summary line, with a change against a baseline when given."""
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
    line = f"{report.name} summary: " + ", ".join(parts)
    return f"{line} (layers: {report.layers_note})" if report.layers_note else line


def check_lines(report: ModelReport, baseline: ModelReport | None, img: int) -> list[str]:
    """What `check` says under the table: the summary, the target's own line, operators, fusion, export."""
    lines = [summary_line(report, baseline)]
    if report.reference:
        owner = report.reference_by or "the checkout"
        lines.append(f"{owner}'s own summary (thop's count only): {report.reference}")
    note = operator_note(report)
    if note:
        lines.append(note)
    if report.fused_params is not None:
        lines.append(
            f"fused (Conv + BatchNorm folded, as the target's fuse()): {report.fused_modules} layers, "
            f"{report.fused_params} parameters, {report.fused_gflops:.1f} GFLOPs"
        )
    lines.append(f"forward and backward at {img}x{img}: ok; every parameter got a gradient; outputs finite.")
    if report.export:
        lines.append(export_line(report.export))
    return lines


def operator_note(report: ModelReport) -> str:
    """What the `*` rows are, and the work thop misses that their GFLOPs include."""
    names = list(dict.fromkeys(layer.operator for layer in report.layers if layer.operator))
    if not names:
        return ""
    builtin = [OPERATORS[name.lower()] for name in names if name.lower() in OPERATORS]
    uncounted = [op.uncounted_note for op in builtin if op.uncounted_note]
    yours = [name for name in names if name.lower() not in OPERATORS]
    listed = ", ".join(f"{name} (yours)" if name in yours else name for name in names)
    if not report.uncounted_gflops or not uncounted:
        return f"* {listed} layers." + (
            " Yours are recorded in yolopatch.toml (`yolopatch ops`)." if yours else ""
        )
    return (
        f"* {listed} layers. GFLOPs include {' and '.join(uncounted)} ({report.uncounted_gflops:.2f} "
        "GFLOPs at 640), which thop, the target's own summary and torch's FlopCounterMode leave out."
    )


def export_line(report: ExportReport) -> str:
    """One line on what the export proves: format and tools, size of the graph and the file, parity."""
    opset = f", opset {report.opset}" if report.opset else ""
    runs = "; ".join(
        f"{'x'.join(map(str, p.shape))}: max abs {p.max_abs:.1e}, relative {p.max_rel:.1e}"
        for p in report.parity
    )
    return (
        f"{report.format} export ({report.exporter}{opset}): {report.nodes} nodes, "
        f"{report.size_bytes / 1e6:.1f} MB; against eager: {runs}; ok."
    )
