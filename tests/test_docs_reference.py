"""The committed command reference (docs/reference.md) is what Typer's generator writes from the app today:
a changed option or help text fails here until `python scripts/docs.py --write` is run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from helpers import docs_script

ROOT = Path(__file__).parent.parent


docs = docs_script()


def test_committed_reference_is_current():
    committed = docs.REFERENCE.read_text(encoding="utf-8")
    assert committed == docs.reference(), "docs/reference.md is stale: run `python scripts/docs.py --write`"


def test_reference_names_every_command_and_option():
    """Every command of the app and every option `--help` shows appear in the reference."""
    text = docs.REFERENCE.read_text(encoding="utf-8")
    for command in ("apply", "inject", "check", "layers", "ops", "ops add", "ops remove"):
        assert f"## `yolopatch {command}`" in text
        help_text = subprocess.run(
            [sys.executable, "-m", "yolopatch", *command.split(), "--help"],
            capture_output=True,
            text=True,
            env={"COLUMNS": "200", "PATH": ""},
        ).stdout
        flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", help_text))
        missing = {flag for flag in flags if not re.search(rf"(?<![\w-]){flag}(?![\w-])", text)}
        assert flags and not missing, (command, missing)


def test_help_fits_80_columns_and_ends_with_an_example():
    """At 80 columns no help line is cut or runs over, and each command's help ends with one example."""
    for command in ("", "apply", "inject", "check", "layers", "ops", "ops add", "ops remove"):
        result = subprocess.run(
            [sys.executable, "-m", "yolopatch", *command.split(), "--help"],
            capture_output=True,
            text=True,
            env={"COLUMNS": "80", "PATH": ""},
        )
        lines = result.stdout.rstrip().splitlines()
        assert result.returncode == 0 and all(len(line) <= 80 for line in lines), command
        assert "…" not in result.stdout, f"{command}: a help text is cut at 80 columns"
        assert lines[-1].strip().startswith("Example: yolopatch "), (command, lines[-1])
