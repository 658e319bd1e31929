"""Several models in one table (check A.yaml B.yaml ...): on screen, or as markdown, csv or latex to paste."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from rich.table import Table

if TYPE_CHECKING:
    from yolopatch.report import Latency
from yolopatch.report import ModelReport

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
