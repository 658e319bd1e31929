"""Rich renderables for the CLI's tables. Pure: data in, renderable out, nothing printed here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from rich.table import Table
from rich.text import Text

from yolopatch.channels import Shape
from yolopatch.commands.apply import Change
from yolopatch.modelyaml import Layer
from yolopatch.operators.registry import OPERATORS

if TYPE_CHECKING:
    from yolopatch.report import ExportReport, Latency
from yolopatch.hints import after_add
from yolopatch.operators.spec import Operator
from yolopatch.report import ModelReport

Justify = Literal["left", "right"]


@dataclass(frozen=True)
class _Col:
    """A column of a table fitted to the terminal: `drop` says when it gives way (1 first; None never),
    `wrap` that its text is prose that may break between words (names and numbers never break)."""

    name: str
    justify: Justify = "left"
    drop: int | None = None
    wrap: bool = False


def _fitted(
    columns: Sequence[_Col], rows: Sequence[tuple[Sequence[str], str | None]], width: int, **options
) -> Table:
    """A table that fits `width`: columns give way in their `drop` order until the cells fit unbroken."""

    def lines(text: str) -> list[str]:
        return text.split("\n")

    def need(i: int) -> int:
        """The column's least width: its longest line, or for prose its longest word; at least its header's
        longest line (a header may hold a line break)."""
        cells = [row[i] for row, _ in rows]
        header = max(len(line) for line in lines(columns[i].name))
        if columns[i].wrap:
            return max(max((len(w) for c in cells for w in c.split()), default=1), header)
        return max(max((len(line) for c in cells for line in lines(c)), default=1), header)

    keep = list(range(len(columns)))
    order = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
    while sum(need(i) for i in keep) + 3 * len(keep) + 1 > width and order:
        keep.remove(order.pop(0)[1])
    table = Table(**options)
    for i in keep:
        column = columns[i]
        table.add_column(
            column.name,
            justify=column.justify,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
            min_width=need(i),
        )
    for row_cells, style in rows:
        table.add_row(*(Text(row_cells[i]) for i in keep), style=style)
    return table


def changes_table(changes: Sequence[Change]) -> Table:
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
        _Col("#", "right"),
        _Col("section", drop=1),
        _Col("from", "right", drop=4, wrap=True),
        _Col("n", "right", drop=2),
        _Col("module"),
        _Col("args", drop=3, wrap=True),
        *(_Col(f"out ch\n{scale}" if scale else "out ch", "right") for scale in shapes),
        _Col("stride", "right"),
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
    return _fitted(
        columns, rows, width, title=title, title_justify="left", caption=caption, caption_justify="left"
    )


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
        _Col("#", "right"),
        _Col("from", "right", drop=4, wrap=True),
        _Col("n", "right", drop=1),
        _Col("module"),
        _Col("arguments", drop=2, wrap=True),
        _Col("output", drop=3),
        _Col("params", "right"),
        _Col("GFLOPs@640", "right"),
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
    return _fitted(columns, rows, width, title=title, title_justify="left")


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
    line = f"{report.name} summary: " + ", ".join(parts)
    return f"{line} (layers: {report.layers_note})" if report.layers_note else line


def check_lines(report: ModelReport, baseline: ModelReport | None, img: int) -> list[str]:
    """What `check` says under the table: the summary, the target's own line, operators, fusion, export."""
    lines = [summary_line(report, baseline)]
    if report.reference:
        owner = report.builder.split(" at ")[0] if report.builder else "the checkout"
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
        "GFLOPs at 640), which thop, YOLOv5's own summary and torch's FlopCounterMode leave out."
    )


def operators_table(width: int = 100, users: Sequence[Operator] = ()) -> Table:
    """Every operator, the user's own after the built-ins (marked, with file and rule), fitted to `width`
    (the formula, then the channel rule, what it replaces and the paper give way: `yolopatch ops NAME`
    shows them all)."""
    columns = [
        _Col("name"),
        _Col("paper", drop=4, wrap=True),
        _Col("yaml args", wrap=True),
        _Col("channels", drop=2, wrap=True),
        _Col("replaces", drop=3, wrap=True),
        _Col("parameters at C", drop=1, wrap=True),
    ]
    rows = [
        (
            [_marked(op), _origin(op), _yaml_args(op), _channel_rule(op), _replaces(op), op.params_formula],
            None,
        )
        for op in [*OPERATORS.values(), *users]
    ]
    title = "Operators (yolopatch apply MODEL.yaml --layers SEL --op NAME)"
    if users:
        title += "; + yours, from yolopatch.toml"
    return _fitted(columns, rows, width, title=title, title_justify="left")


def _marked(op: Operator) -> str:
    return f"{op.name} +" if op.user is not None else op.name


def _origin(op: Operator) -> str:
    if op.user is None:
        return op.paper
    return f"yours: {op.user.file.name}:{op.user.cls}"


def operator_detail(op: Operator) -> Table:
    table = Table(title=f"{op.name}: {op.summary}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    example = [-1, 1, op.name, op.yaml_args(256, example_stride(op), op.defaults)]
    rows = [
        ("paper", f"{op.title}. {op.paper}. {op.url}") if op.user is None else ("class", _user_class(op)),
        ("yaml args", _yaml_args(op)),
        ("options", "; ".join(f"{o.flag} / {o.name}={o.default}: {o.help}" for o in op.options) or "none"),
        ("channels", _channel_rule(op)),
        ("replaces", _replaces(op)),
        ("--into", _slot(op)),
        *_user_rows(op),
        ("parameters at C", op.params_formula),
        ("FLOPs", f"thop's count plus {op.uncounted_note}" if op.uncounted_note else "thop's count"),
        ("example row", str(example).replace("'", "")),
    ]
    for key, value in rows:
        table.add_row(key, Text(value))
    return table


def example_stride(op: Operator) -> Fraction:
    """The stride of the row an example shows: the operator's own, 1/2 for an upsampler, else 1."""
    if op.own_stride is not None:
        return op.own_stride
    return Fraction(1, 2) if op.upsamples else Fraction(1)


def _user_class(op: Operator) -> str:
    user = op.user
    changed = user.changed()
    return f"{user.cls} in {user.file}" + (f" (warning: {changed})" if changed else "")


def _user_rows(op: Operator) -> list[tuple[str, str]]:
    user = op.user
    if user is None:
        return []
    mapping = ", ".join(f"{p}={r}" for p, r in user.roles.items()) or "none"
    rows = [
        ("rule", f"{user.rule} ({user.learned})"),
        ("constructor", f"{user.cls}({mapping})" + (f"; --set {user.values}" if user.values else "")),
        ("evidence", "; ".join(user.evidence) or "none recorded"),
    ]
    if user.unused:
        rows.append(("warning", _unused_warning(user.name, user.unused)))
    if user.target:
        rows.append(("learned against", user.target))
    rows.append(("recorded in", str(user.config)))
    return rows


def _slot(op: Operator) -> str:
    """Where `apply --into` puts it inside a CSP block's bottlenecks, or why it cannot go there."""
    from yolopatch.csp import slot_of

    slot, why = slot_of(op)
    return f"{slot} slot: {why}" if slot else f"no: {why}"


def _unused_warning(name: str, unused: Sequence[str]) -> str:
    listed = ", ".join(unused[:4]) + (f" and {len(unused) - 4} more" if len(unused) > 4 else "")
    return (
        f"{name}'s parameters {listed} got no gradient in the probe; multi-GPU training (DDP) fails on "
        "them unless unused parameters are allowed (YOLOv5/ultralytics do not allow them by default)"
    )


def learned_lines(result: Any) -> list[str]:
    """What `ops add` says: the rule with its evidence, the constructor, constraints, the yaml row."""
    op, user = result.operator, result.op
    verb = "replaced" if result.replaced else "recorded"
    lines = [
        f"{user.cls} ({result.source.path.name}:{result.source.line}): {user.rule} ({user.learned})",
        *(f"  {line}" for line in user.evidence),
        f"  constructor {user.cls}{result.roles.describe(result.source, user.values)}",
        f"  yaml row: [-1, 1, {op.name}, {op.yaml_args(256, example_stride(op), op.defaults)}]".replace(
            "'", ""
        ),
    ]
    if user.target:
        lines.append(f"  learned against {user.target}")
    if user.unused:
        lines.append(f"warning: {_unused_warning(op.name, user.unused)}")
    lines.append(f"{result.change.path}: {verb} [ops.{op.name}]")
    lines.append(after_add(op))
    return lines


def _yaml_args(op: Operator) -> str:
    return "[" + ", ".join(["C", *(f"{o.name}={o.default}" for o in op.options)]) + "]"


def _channel_rule(op: Operator) -> str:
    if op.user is not None:
        return {
            "keep": "keeps channels",
            "conv": "C in, C2 out",
            "csp": "C in, C2 out, n repeats (a CSP block)",
        }[op.user.rule.channels] + _stride_words(op)
    return (
        "keeps channels and size" if op.keeps_channels else "C in, C2 out (1x1 projection when they differ)"
    )


def _stride_words(op: Operator) -> str:
    stride = op.user.rule.stride
    if stride == "1":
        return ", size kept"
    if stride.startswith("arg:"):
        return f", stride from {stride[4:]}"
    if stride.startswith("up:"):
        return f", upsamples by {stride[3:]}"
    return f", stride {stride}"


def _replaces(op: Operator) -> str:
    if op.upsamples:
        return "nn.Upsample rows"
    if op.own_stride is not None and op.own_stride != 1:
        return f"layers of stride {op.own_stride}" + (" that keep channels" if op.keeps_channels else "")
    if op.repeats:
        return "CSP rows (keeps their n)"
    if op.keeps_channels:
        return "layers that keep channels and size (else --insert)"
    return (
        "single-input conv-like layers, strided too" if op.own_stride is None else "stride-1 conv-like layers"
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


# --- several models in one table (ablations) ----------------------------------------------------------------

COMPARISON_CAPTION = (
    "Parameters as built (unfused); GFLOPs at 640 in the target's convention (thop's count) plus operators' "
    "work thop cannot see; differences against the reference row."
)


def comparison_rows(
    reports: Sequence[ModelReport], reference: int = 0, latencies: Mapping[str, Latency] | None = None
) -> list[dict[str, object]]:
    """One row per model: its figures and their change against `reports[reference]` (None on that row);
    fused figures and latency when they were measured."""
    base = reports[reference]
    rows: list[dict[str, object]] = []
    for i, report in enumerate(reports):
        own = i == reference
        row: dict[str, object] = {
            "model": report.name,
            "reference": own,
            "layers": report.modules,
            "params": report.params,
            "params_change": None if own else report.params - base.params,
            "params_change_pct": None
            if own or not base.params
            else 100 * (report.params - base.params) / base.params,
            "gflops": report.gflops,
            "gflops_change": None if own else report.gflops - base.gflops,
            "gflops_change_pct": None
            if own or not base.gflops
            else 100 * (report.gflops - base.gflops) / base.gflops,
        }
        if report.fused_params is not None:
            row.update(
                fused_layers=report.fused_modules,
                fused_params=report.fused_params,
                fused_gflops=report.fused_gflops,
            )
        if latencies is not None:
            latency = latencies[report.name]
            row.update(
                latency_ms=latency.median_ms,
                latency_q1_ms=latency.q1_ms,
                latency_q3_ms=latency.q3_ms,
                fps=latency.fps,
            )
        rows.append(row)
    return rows


_BASE_COLUMNS = ("model", "layers", "params", "Δ params", "GFLOPs", "Δ GFLOPs")
_FUSED_COLUMNS = ("params fused", "GFLOPs fused")
_LATENCY_COLUMNS = ("ms (q1-q3)", "FPS")


def _columns(row: Mapping[str, object]) -> tuple[str, ...]:
    return (
        _BASE_COLUMNS
        + (_FUSED_COLUMNS if "fused_params" in row else ())
        + (_LATENCY_COLUMNS if "latency_ms" in row else ())
    )


def _comparison_cells(
    row: Mapping[str, object], percent: bool = True, mark_reference: bool = True, quartiles: bool = True
) -> list[str]:
    def change(value: object, pct: object, fmt: str) -> str:
        if value is None:
            return "—"
        text = f"{value:+{fmt}}"
        return f"{text} ({pct:+.2f}%)" if percent and isinstance(pct, float) else text

    name = f"{row['model']} (reference)" if row["reference"] and mark_reference else str(row["model"])
    cells = [
        name,
        str(row["layers"]),
        f"{row['params']:,}",
        change(row["params_change"], row["params_change_pct"], ",d"),
        f"{row['gflops']:.2f}",
        change(row["gflops_change"], row["gflops_change_pct"], ".2f"),
    ]
    if "fused_params" in row:
        cells += [f"{row['fused_params']:,}", f"{row['fused_gflops']:.2f}"]
    if "latency_ms" in row:
        spread = f" ({row['latency_q1_ms']:.1f}-{row['latency_q3_ms']:.1f})" if quartiles else ""
        cells += [f"{row['latency_ms']:.1f}{spread}", f"{row['fps']:.1f}"]
    return cells


# What gives way, in order, when the table is wider than the terminal: the detail first, then the columns
# a reader can best do without (the fused and latency figures were asked for, so they stay longest).
_FITTING = (
    ("percent", None),
    ("quartiles", None),
    (None, "layers"),
    (None, "Δ GFLOPs"),
    (None, "Δ params"),
    (None, "GFLOPs"),
    (None, "params"),
)


def comparison_table(rows: Sequence[Mapping[str, object]], width: int = 100, caption: str = "") -> Table:
    """The terminal table, fitted to `width` columns without wrapping or cutting a name or a number: the
    percentages, the quartiles, then whole columns give way (_FITTING) until it fits."""
    columns = _columns(rows[0])
    options = {"percent": True, "quartiles": True}
    dropped: set[str] = set()

    def layout() -> tuple[list[int], list[list[str]]]:
        keep = [i for i, c in enumerate(columns) if c not in dropped]
        cells = [_comparison_cells(r, options["percent"], False, options["quartiles"]) for r in rows]
        return keep, cells

    def fits(keep: list[int], cells: list[list[str]]) -> bool:
        widths = [max(len(columns[i]), *(len(line[i]) for line in cells)) for i in keep]
        return sum(widths) + 3 * len(keep) + 1 <= width

    keep, cells = layout()
    for option, column in _FITTING:
        if fits(keep, cells):
            break
        if option:
            options[option] = False
        elif column in columns:
            dropped.add(column)
        keep, cells = layout()
    text = " ".join(part for part in (COMPARISON_CAPTION, caption and f"Latency: {caption}.") if part)
    table = Table(caption=f"{text} The first row (bold) is the reference.", caption_justify="left")
    for i in keep:
        header = "ms" if columns[i] == _LATENCY_COLUMNS[0] and not options["quartiles"] else columns[i]
        table.add_column(header, justify="left" if i == 0 else "right", no_wrap=True)
    for row, line in zip(rows, cells, strict=True):
        table.add_row(*(line[i] for i in keep), style="bold" if row["reference"] else None)
    return table


def comparison_text(rows: Sequence[Mapping[str, object]], fmt: str, caption: str = "") -> str:
    """The table as text to paste: markdown, csv (raw numbers) or latex (booktabs)."""
    columns = _columns(rows[0])
    note = " ".join(part for part in (COMPARISON_CAPTION, caption and f"Latency: {caption}.") if part)
    if fmt == "csv":
        keys = list(rows[0])
        lines = [",".join(keys)] + [",".join(_csv_cell(row[k]) for k in keys) for row in rows]
        return "\n".join(lines) + "\n"
    cells = [_comparison_cells(row) for row in rows]
    if fmt == "markdown":
        head = "| " + " | ".join(columns) + " |"
        rule = "|" + "|".join([":---"] + ["---:"] * (len(columns) - 1)) + "|"
        body = ["| " + " | ".join(c.replace("|", "\\|") for c in line) + " |" for line in cells]
        return "\n".join([head, rule, *body, "", note]) + "\n"
    head = " & ".join(c.replace("Δ", r"$\Delta$") for c in columns) + r" \\"
    body = [" & ".join(_latex(c) for c in line) + r" \\" for line in cells]
    spec = "l" + "r" * (len(columns) - 1)
    return (
        "\n".join(
            [
                rf"\begin{{tabular}}{{{spec}}}",
                r"\toprule",
                head,
                r"\midrule",
                *body,
                r"\bottomrule",
                r"\end{tabular}",
                f"% {note}",
            ]
        )
        + "\n"
    )


def _csv_cell(value: object) -> str:
    if value is None:
        return ""
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f'"{text}"' if "," in text or '"' in text else text


def _latex(cell: str) -> str:
    for raw, escaped in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#")):
        cell = cell.replace(raw, escaped)
    return cell.replace("—", "--")
