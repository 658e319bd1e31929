"""The command line on darknet .cfg files: `layers` (a fixed-width table), `apply` (--diff, --check, the
default output, refusals as one line), `ops` (which operators have a native darknet form), and no torch."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, run_cli, snapshot
from rich.console import Console

from yolopatch.formats.registry import format_for
from yolopatch.operators.registry import OPERATORS
from yolopatch.render.operators import operator_detail, operators_table
from yolopatch.render.sections import sections_table

TINY4 = FIXTURES / "darknet" / "tiny4.cfg"
RES3 = FIXTURES / "darknet" / "res3.cfg"


def render(renderable, width: int = 100) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    console.print(renderable)
    return "\n".join(line.rstrip() for line in console.file.getvalue().splitlines())


def _copy(tmp_path: Path, source: Path = TINY4, crlf: bool = False) -> Path:
    text = source.read_bytes().decode()
    path = tmp_path / "model.cfg"
    path.write_bytes((text.replace("\n", "\r\n") if crlf else text).encode())
    return path


def _cells(text: str, first: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(f"│ {first:>2} │"))
    return [cell.strip() for cell in row.strip("│ ").split("│")]


@pytest.mark.parametrize(
    ("model", "index", "cells"),
    [
        pytest.param(TINY4, "0", ["0", "convolutional", "input", "32", "2"], id="reads-the-image"),
        pytest.param(TINY4, "3", ["3", "route", "2", "32", "4", "groups=2 group_id=1"], id="route-group"),
        pytest.param(TINY4, "30", ["30", "yolo (head)", "29", "255", "32", "mask=3,4,5"], id="yolo-head"),
        pytest.param(TINY4, "34", ["34", "route", "33, 23", "384", "16"], id="route-absolute"),
        pytest.param(RES3, "23", ["23", "route", "22, 20, 18, 17", "1024", "16"], id="spp"),
        pytest.param(RES3, "4", ["4", "shortcut", "3, 1", "64", "2"], id="shortcut"),
    ],
)
def test_layers_lists_index_type_sources_channels_stride(model, index, cells):
    listing = format_for(model).layers(model.read_text(), str(model))  # type: ignore[union-attr]
    text = render(sections_table(listing, 120), 120)
    assert _cells(text, index)[: len(cells)] == cells


@pytest.mark.parametrize("width", [60, 80, 100])
def test_the_layers_table_fits_the_terminal(width):
    listing = format_for(RES3).layers(RES3.read_text(), str(RES3))  # type: ignore[union-attr]
    text = render(sections_table(listing, width), width)
    assert all(len(line) <= width for line in text.splitlines()) and "…" not in text


def test_layers_through_the_command_line():
    result = run_cli("layers", str(RES3))
    assert result.returncode == 0 and "yolo (head)" in result.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        pytest.param(["-l", "backbone"], 2, "no backbone or head sections", id="backbone"),
        pytest.param(["-l", "4"], 1, "cannot replace it with Involution: a [shortcut]", id="shortcut"),
        pytest.param(["-l", "9", "--each"], 2, "--each does not apply to a darknet .cfg file", id="each"),
        pytest.param(["-l", "9", "--into", "C3"], 2, "--into does not apply", id="into"),
        pytest.param(["-l", "9", "--scale", "n"], 2, "--scale does not apply", id="scale"),
        pytest.param(["-l", "9", "--op", "nope"], 2, "unknown operator", id="unknown-op"),
    ],
)
def test_apply_refusals_are_one_line_and_write_nothing(tmp_path, args, code, message):
    path = _copy(tmp_path, RES3)
    before = snapshot(tmp_path)
    result = run_cli("apply", str(path), *args)
    assert (result.returncode, result.stderr.count("\n")) == (code, 1), result.stderr
    assert message in result.stderr
    assert snapshot(tmp_path) == before


def test_apply_writes_beside_the_input_then_finds_it_up_to_date(tmp_path):
    path = _copy(tmp_path, crlf=True)
    result = run_cli("apply", str(path), "-l", "16", "--op", "se", "--insert")
    assert result.returncode == 0, result.stderr
    written = tmp_path / "model-se.cfg"
    data = written.read_bytes()
    assert b"[scale_channels]\r\nfrom=-4\r\n" in data and data.count(b"\n") == data.count(b"\r\n")
    assert "darknet trains" in result.stdout and "Changed layers" in result.stdout
    again = run_cli("apply", str(path), "-l", "16", "--op", "se", "--insert")
    assert again.returncode == 0 and "already up to date" in again.stderr
    twice = run_cli("apply", str(written), "-l", "16", "--op", "se", "--insert", "--in-place")
    assert twice.returncode == 0 and "already patched" in twice.stderr and written.read_bytes() == data


def test_apply_diff_and_check_write_nothing(tmp_path):
    path = _copy(tmp_path)
    before = snapshot(tmp_path)
    diff = run_cli("apply", str(path), "-l", "12", "--op", "involution", "--diff")
    assert diff.returncode == 0 and "+[involution]" in diff.stdout and "-[convolutional]" in diff.stdout
    check = run_cli("apply", str(path), "-l", "12", "--check")
    assert check.returncode == 1 and "would change 1 layer(s)" in check.stderr
    assert snapshot(tmp_path) == before


def test_an_own_type_says_what_builds_it(tmp_path):
    result = run_cli("apply", str(_copy(tmp_path)), "-l", "12", "--op", "cbam", "--insert")
    assert result.returncode == 0
    assert "[cbam] is no darknet layer" in result.stderr and "yolopatch inject" in result.stdout


def test_ops_shows_which_operators_have_a_native_form():
    text = render(operators_table(200), 200)
    rows = [line.split("│") for line in text.splitlines() if line.startswith("│")]
    forms = {cells[1].strip(): cells[-2].strip() for cells in rows if cells[1].strip()}
    assert {name: forms[op.name] for name, op in OPERATORS.items()} == {
        "involution": "[involution]",
        "se": "native",
        "cbam": "[cbam]",
        "eca": "[eca]",
        "coordatt": "[coordatt]",
        "simam": "[simam]",
        "sam": "native",
    }
    assert "[scale_channels]" in render(operator_detail(OPERATORS["se"]), 200)


@pytest.mark.parametrize(
    "args",
    [["layers", "{model}"], ["apply", "{model}", "-l", "12", "--diff"], ["ops"]],
    ids=["layers", "apply", "ops"],
)
def test_torch_is_never_imported_for_a_cfg(args):
    args = [a.format(model=TINY4) for a in args]
    code = (
        "import sys, runpy; sys.argv = ['yolopatch', *sys.argv[1:]];\n"
        "try:\n    runpy.run_module('yolopatch', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env={**os.environ}
    )
    assert result.returncode == 0, result.stderr
