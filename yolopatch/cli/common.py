"""What every command of the command line shares: the two consoles, option types, the one error handler,
and the one diff / check / write path."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class TableFormat(str, Enum):
    markdown = "markdown"
    csv = "csv"
    latex = "latex"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"
    opencv = "opencv"


class Rewire(str, Enum):
    all = "all"
    next = "next"


ModelArg = Annotated[Path, typer.Argument(metavar="MODEL.yaml", help="The model yaml.", dir_okay=False)]
ScaleOption = Annotated[
    str | None,
    typer.Option(
        "--scale", metavar="X", help="For a file with scales: this scale only (default: every scale)."
    ),
]
ChannelsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--channels",
        metavar="MODULE=arg|same|LAYER=N",
        help="State channels yolopatch cannot know: a module's come from its first argument (arg) or equal its "
        "input's (same); or layer LAYER outputs N.",
    ),
]


def notes(notes: Sequence[str]) -> None:
    for note in notes:
        err.print(f"note: {note}", markup=False)


def finish(changes: Sequence[FileChange], diff: bool, check: bool, pending: str) -> None:
    """The one diff / check / write path of apply and inject. Returns after writing."""
    from yolopatch.files import change_diff, write_changes

    if diff:
        for change in changes:
            if change.changed:
                sys.stdout.write(change_diff(change))
        raise typer.Exit(0)
    if check:
        err.print(f"{pending}; run without --check to write.", markup=False)
        raise typer.Exit(1)
    write_changes(changes)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


def name_values(pairs: Sequence[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r}: write NAME=VALUE, e.g. e_lambda=1e-3", param_hint="--set")
        values[key.strip()] = value.strip()
    return values


def exclusive(*flags: tuple[str, bool]) -> None:
    given = [name for name, on in flags if on]
    if len(given) > 1:
        raise typer.BadParameter(f"use either {given[0]} or {given[1]}, not both", param_hint=given[-1])


@contextmanager
def errors() -> Iterator[None]:
    """Turn the one user-facing exception type into one line on stderr: exit code 2 for a bad option value
    (OptionError, whose message names the option), 1 for anything else."""
    try:
        yield
    except OptionError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    except YolopatchError as exc:
        fail(str(exc))


def fail(message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)
