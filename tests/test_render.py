"""Rendering: tables and lines from hand-built reports, as fixed-width colourless text (rich's own style)."""

from __future__ import annotations

import io

import pytest
from helpers import EXAMPLE, FIXTURES, check_yaml, geometries_of
from rich.console import Console

from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.render.model import operator_note, report_table, summary_line
from yolopatch.render.operators import operator_detail, operators_table
from yolopatch.report import LayerReport, ModelReport


def render(renderable, width: int = 100) -> str:
    console = Console(
        file=io.StringIO(), width=width, color_system=None, force_terminal=False, legacy_windows=False
    )
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _layer(index, module, args, params, gflops, uncounted=0.0, operator="", source=-1):
    return LayerReport(index, source, 1, module, args, "[1, 64, 8, 8]", params, gflops, uncounted, operator)


REPORT = ModelReport(
    name="tiny.yaml",
    layers=[
        _layer(0, "Conv", "[64, 3, 2]", 1856, 0.3),
        _layer(1, "Involution", "[64, 7, 1]", 1234567, 0.25, uncounted=0.05, operator="Involution"),
        _layer(2, "CBAM", "[64]", 628, 0.01, operator="CBAM"),
        _layer(3, "Concat", "[1]", 0, 0.0, source=(-1, 0)),
    ],
    modules=42,
    params=1237051,
    gradients=1237051,
    gflops=0.56,
    uncounted_gflops=0.05,
    img=128,
    batch=2,
    strides=[],
)

TABLE = """\
tiny.yaml at --img 128, batch 2
┏━━━┳━━━━━━━━━┳━━━┳━━━━━━━━━━━━━━┳━━━━━━━━━━━━┳━━━━━━━━━━━━━━━┳━━━━━━━━━━━┳━━━━━━━━━━━━┓
┃ # ┃    from ┃ n ┃ module       ┃ arguments  ┃ output        ┃    params ┃ GFLOPs@640 ┃
┡━━━╇━━━━━━━━━╇━━━╇━━━━━━━━━━━━━━╇━━━━━━━━━━━━╇━━━━━━━━━━━━━━━╇━━━━━━━━━━━╇━━━━━━━━━━━━┩
│ 0 │      -1 │ 1 │ Conv         │ [64, 3, 2] │ [1, 64, 8, 8] │     1,856 │       0.30 │
│ 1 │      -1 │ 1 │ Involution * │ [64, 7, 1] │ [1, 64, 8, 8] │ 1,234,567 │       0.25 │
│ 2 │      -1 │ 1 │ CBAM *       │ [64]       │ [1, 64, 8, 8] │       628 │       0.01 │
│ 3 │ [-1, 0] │ 1 │ Concat       │ [1]        │ [1, 64, 8, 8] │         0 │       0.00 │
└───┴─────────┴───┴──────────────┴────────────┴───────────────┴───────────┴────────────┘"""


def test_report_table():
    assert render(report_table(REPORT)) == TABLE


SUMMARIES = [
    (None, "tiny.yaml summary: 42 layers, 1237051 parameters, 1237051 gradients, 0.6 GFLOPs"),
    (
        ModelReport("base.yaml", [], 40, 1000000, 1000000, 0.5, 0.0, 128, 1, []),
        "tiny.yaml summary: 42 layers (+2, +5.0%), 1237051 parameters (+237051, +23.7%), "
        "1237051 gradients (+237051, +23.7%), 0.6 GFLOPs (+0.1, +12.0%)",
    ),
]


def test_summary_line_alone_and_against_a_baseline():
    for base, expected in SUMMARIES:
        assert summary_line(REPORT, base) == expected


def test_operator_note_names_the_operators_and_what_thop_misses():
    assert operator_note(REPORT) == (
        "* Involution, CBAM layers. GFLOPs include their aggregation (0.05 GFLOPs at 640), which thop, "
        "the target's own summary and torch's FlopCounterMode leave out."
    )
    plain = ModelReport(
        "p", [_layer(0, "SE", "[64]", 10, 0.0, operator="SE")], 1, 10, 10, 0.0, 0.0, 64, 1, []
    )
    assert operator_note(plain) == "* SE layers."


def test_operators_table_lists_every_operator_in_the_registrys_order():
    text = render(operators_table(), width=200)
    cells = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    rows = [cell for cell in cells if cell]
    assert rows == [op.name for op in OPERATORS.values()]


def test_operator_detail_shows_options_and_an_example_row():
    text = render(operator_detail(get_operator("cbam")), width=200)
    assert "│ example row     │ [-1, 1, CBAM, [256]]" in text
    assert "--reduction / r=16" in text and "--kernel / k=7" in text
    assert "2·C·(C//r) + C//r + C + 2·k·k + 2" in text


def _real_report():
    """yolov5s as check measures it, its Detect row with three outputs: the widest rows yolopatch prints."""
    return check_yaml(EXAMPLE, "examples/yolov5s.yaml", 64, 1)


def _layers_table(name):
    from yolopatch.channels import simulate
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.render.model import layers_table

    parsed = parse_model_yaml((FIXTURES / name).read_text(encoding="utf-8"))
    return lambda width: layers_table(
        parsed.layers,
        {s: simulate(parsed.logical_rows(), g, name).shapes for s, g in geometries_of(parsed.values).items()},
        width,
    )


TABLES = {
    "check": lambda width: report_table(_real_report(), width),
    "layers-yolov5": _layers_table("p6.yaml"),
    "layers-scales": _layers_table("ultralytics/scales.yaml"),
    "ops": operators_table,
}


@pytest.mark.parametrize("width", [80, 100])
@pytest.mark.parametrize("name", list(TABLES))
def test_every_table_fits_the_width_without_cutting_a_name_or_a_number(name, width):
    text = render(TABLES[name](width), width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert "…" not in text  # nothing cut short
    for line in lines:  # no number split across a cell's lines: a cell never ends in a digit-comma
        assert not any(
            cell.strip().endswith(",") and cell.strip()[:-1].replace(",", "").isdigit()
            for cell in line.split("│")
        )
    if name == "check":
        detect = next(line for line in text.splitlines() if "Detect" in line)
        assert "229,245" in detect and "GFLOPs@640" in text
    if name == "ops":
        assert [op.name for op in OPERATORS.values() if op.name not in text] == []
