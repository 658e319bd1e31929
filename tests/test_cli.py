"""The command line: exit codes, one- or two-line errors without tracebacks, nothing written on failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT, fixture_text, run_cli, run_process, snapshot

from yolopatch import __version__


def _write(tmp_path: Path, text: str, name: str = "model.yaml") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


BAD_INPUT = [
    pytest.param(
        "backbone: [[-1, 1, Conv, [64, 3]]\nhead: []\n", ["-l", "0"], "not valid YAML", id="unparseable"
    ),
    pytest.param(
        "nc: 1\nbackbone:\n\t[[-1, 1, Conv, [64]]]\nhead: []\n", ["-l", "0"], ":3:1: a tab", id="tab"
    ),
    pytest.param(
        EXAMPLE.replace("[[-1, 1, Conv, [64, 6, 2, 2]]", "[&r [-1, 1, Conv, [64, 6, 2, 2]]"),
        ["-l", "1"],
        "anchor or alias",
        id="alias-on-row",
    ),
    pytest.param(
        "nc: 80\nhead: [[-1, 1, Conv, [64]]]\n", ["-l", "0"], "no backbone section", id="no-backbone"
    ),
    pytest.param(EXAMPLE, ["-l", "12"], "layer 12 (Concat): cannot replace it", id="not-replaceable-concat"),
    pytest.param(EXAMPLE, ["-l", "24", "--insert"], "Detect is the model's output", id="insert-after-detect"),
    pytest.param(
        EXAMPLE,
        ["-l", "0"],
        "would see 3 input channels: not divisible by --group-channels 16 (values that divide 3: 1, 3); "
        "and 3 // --reduction 4 is 0 (use --reduction 3 or less)",
        id="layer-0-says-everything-at-once",
    ),
    pytest.param(EXAMPLE, ["-l", "2", "--group-channels", "24"], "values that divide 64", id="gc-24"),
    pytest.param(EXAMPLE, ["-l", "Concat"], "leaves nothing to change", id="nothing-replaceable"),
    pytest.param(
        EXAMPLE.replace("[[-1, 6], 1, Concat, [1]]", "[[-1, 16], 1, Concat, [1]]"),
        ["-l", "8"],
        "layer 12 takes input from 16, which is not an earlier layer",
        id="forward-reference",
    ),
    pytest.param(
        EXAMPLE.replace("nc: 80", "nc: [80"),
        ["-l", "8"],
        ":5:1: not valid YAML (expected ',' or ']', but got '<scalar>'; while parsing a flow sequence that starts at line 4)",
        id="unclosed-bracket",
    ),
]


# A --layers that names no layer is a usage error: exit 2, one line, what exists.
BAD_SELECTION = [
    pytest.param(["-l", "25"], "--layers 25: out of range; this model has layers 0-24", id="out-of-range"),
    pytest.param(
        ["-l", "8-2"], "--layers 8-2: a range goes from low to high (--layers 2-8)", id="reversed-range"
    ),
    pytest.param(["-l", "3,,4"], "empty term", id="empty-term"),
    pytest.param(["-l", "C4"], "matches no layer", id="unknown-module"),
    pytest.param(["-l", "neck:C3"], "unknown section 'neck'", id="unknown-section"),
]


@pytest.mark.parametrize(("args", "message"), BAD_SELECTION)
def test_a_selection_of_no_layer_is_a_usage_error_in_one_line(tmp_path, args, message):
    path = _write(tmp_path, EXAMPLE)
    before = snapshot(tmp_path)
    result = run_cli("apply", str(path), *args)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(("text", "args", "message"), BAD_INPUT)
def test_bad_input_exits_1_with_a_short_message_and_writes_nothing(tmp_path, text, args, message):
    path = _write(tmp_path, text)
    before = snapshot(tmp_path)
    result = run_cli("apply", str(path), *args)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2
    assert snapshot(tmp_path) == before


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_bytes(EXAMPLE.encode("utf-8") + b"# \xff\n")
    result = run_cli("apply", str(path), "-l", "8")
    assert result.returncode == 1 and "is not UTF-8" in result.stderr


def test_missing_file(tmp_path):
    result = run_cli("apply", str(tmp_path / "nope.yaml"), "-l", "8")
    assert result.returncode == 1 and "no such file" in result.stderr


def test_existing_output_needs_force(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    (tmp_path / "model-involution.yaml").write_text("mine\n")
    result = run_cli("apply", str(path), "-l", "8")
    assert result.returncode == 1 and "already exists. Pass --force" in result.stderr
    assert (tmp_path / "model-involution.yaml").read_text() == "mine\n"
    assert run_cli("apply", str(path), "-l", "8", "--force").returncode == 0
    assert "Involution" in (tmp_path / "model-involution.yaml").read_text()


def test_failed_write_changes_nothing(tmp_path):
    """Root ignores permissions, so the write is made to fail by a folder where the temp file must go."""
    path = _write(tmp_path, EXAMPLE)
    blocked = tmp_path / "out" / "x.yaml"
    (tmp_path / "out").write_text("a file, not a folder")
    before = snapshot(tmp_path)
    result = run_cli("apply", str(path), "-l", "8", "-o", str(blocked))
    assert result.returncode == 1 and "cannot write it" in result.stderr and "Traceback" not in result.stderr
    assert snapshot(tmp_path) == before


def test_in_place_keeps_mode_bits_and_applying_again_is_a_no_op(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    path.chmod(0o640)
    assert run_cli("apply", str(path), "-l", "8", "--in-place").returncode == 0
    assert path.stat().st_mode & 0o777 == 0o640
    patched = path.read_bytes()
    again = run_cli("apply", str(path), "-l", "8", "--in-place")
    assert again.returncode == 0 and "nothing to change" in again.stderr
    assert path.read_bytes() == patched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]


def test_diff_prints_and_writes_nothing(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    result = run_cli("apply", str(path), "-l", "8", "--diff")
    assert result.returncode == 0
    assert "-   [-1, 3, C3, [1024]],\n+   [-1, 1, Involution, [1024, 7, 1]],\n" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.yaml"]


def test_check_exits_1_when_a_change_is_needed_and_0_when_not(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    assert run_cli("apply", str(path), "-l", "8", "--check").returncode == 1
    run_cli("apply", str(path), "-l", "8", "--in-place")
    assert run_cli("apply", str(path), "-l", "8", "--check").returncode == 0


def test_write_prints_the_change_table_and_the_next_command(tmp_path):
    path = _write(tmp_path, EXAMPLE)
    result = run_cli("apply", str(path), "-l", "8")
    assert result.returncode == 0
    assert "[-1, 1, Involution, [1024, 7, 1]]" in result.stdout
    assert "yolopatch inject" in result.stdout and "yolopatch check" in result.stdout


USAGE = [
    pytest.param(
        ["apply", "x.yaml"], "--layers: name the layers to change (or --backbone NAME)", id="no-layers"
    ),
    pytest.param(
        ["apply", "x.yaml", "-l", "1", "--diff", "--check"], "--diff or --check", id="diff-and-check"
    ),
    pytest.param(
        ["apply", "x.yaml", "-l", "1", "--in-place", "-o", "y"], "--in-place or -o", id="in-place-and-o"
    ),
    pytest.param(["nonsense"], "No such command", id="unknown-command"),
    pytest.param(["check", "x.yaml", "--img", "abc"], "--img", id="img-not-a-number"),
    pytest.param(["check", "x.yaml", "--img", "16"], "--img", id="img-too-small"),
    pytest.param(["check", "x.yaml", "--batch", "0"], "--batch", id="batch-zero"),
    pytest.param(
        ["apply", "x.yaml", "-l", "2", "--kernel", "4"], "--kernel 4: must be odd", id="even-kernel"
    ),
    pytest.param(["apply", "x.yaml", "-l", "2", "--group-channels", "0"], "--group-channels", id="gc-zero"),
    pytest.param(
        ["apply", "x.yaml", "-l", "2", "--rewire", "next"], "only means something with --insert", id="rewire"
    ),
    pytest.param(
        ["apply", "x.yaml", "-l", "2", "--op", "nope"], "unknown operator; yolopatch knows", id="op"
    ),
    pytest.param(["apply", "x.yaml", "-l", "2", "--set", "k"], "NAME=VALUE", id="set-without-value"),
    pytest.param(
        ["apply", "x.yaml", "-l", "2", "--set", "q=1"], "Involution has no option 'q'", id="set-unknown"
    ),
    pytest.param(
        ["apply", "x.yaml", "-l", "2", "--set", "k=x"],
        "Involution --kernel x: not a whole number",
        id="set-bad-value",
    ),
    pytest.param(["inject", ".", "--op", "x", "--for", "x.yaml"], "--op or --for", id="op-and-for"),
]


@pytest.mark.parametrize(("args", "message"), USAGE)
def test_usage_errors_exit_2_and_name_the_option(tmp_path, args, message):
    _write(tmp_path, EXAMPLE, "x.yaml")
    before = snapshot(tmp_path)
    result = run_cli(*args, cwd=tmp_path)
    assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    "args", [["--help"], ["-h"], ["apply", "-h"], ["inject", "-h"], ["check", "-h"], ["layers", "-h"]]
)
def test_help_everywhere(args):
    result = run_cli(*args)
    assert result.returncode == 0 and "Usage" in result.stdout


def test_version_through_python_m_yolopatch():
    result = run_process("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"yolopatch {__version__}"


def test_console_script_is_installed():
    script = Path(sys.executable).parent / "yolopatch"
    assert subprocess.run([str(script), "--version"], capture_output=True, text=True).stdout.startswith(
        "yolopatch"
    )


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["apply", "{example}", "-l", "8", "--diff"],
        ["layers", "{example}"],
        ["inject", "{tmp}", "--check"],
    ],
)
def test_torch_is_never_imported_by_apply_layers_inject_or_help(tmp_path, args):
    args = [a.format(example=ROOT / "examples" / "yolov5s.yaml", tmp=tmp_path) for a in args]
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


def test_layers_lists_indices_channels_and_strides():
    result = run_cli("layers", str(ROOT / "examples" / "yolov5s.yaml"))
    assert result.returncode == 0
    row = next(line for line in result.stdout.splitlines() if "SPPF" in line)
    assert [cell.strip() for cell in row.strip("│ ").split("│")] == [
        "9",
        "backbone",
        "-1",
        "1",
        "SPPF",
        "[1024, 5]",
        "512",
        "32",
    ]


def test_non_ascii_in_a_row_is_warned_about(tmp_path):
    text = fixture_text("master.yaml").replace('"nearest"', '"最近"')
    path = _write(tmp_path, text)
    result = run_cli("apply", str(path), "-l", "3")
    assert result.returncode == 0 and "non-ASCII" in result.stderr
