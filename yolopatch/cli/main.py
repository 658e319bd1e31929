"""The command line: the only place that talks to the user. Each command (one module here) parses its
options, calls one function in yolopatch.commands and renders; core errors arrive as YolopatchError."""

from __future__ import annotations

from typing import Annotated

import typer

from yolopatch import __version__
from yolopatch.cli import apply, check, inject, layers, ops
from yolopatch.cli.common import out

app = typer.Typer(
    name="yolopatch",
    help="Add operators (Involution, attention blocks, your own modules) to YOLO models: rewrite yamls, inject "
    "the modules, measure.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        out.print(f"yolopatch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """yolopatch: operators for YOLO models, without copy-pasting from blog posts."""


def main() -> None:
    app(prog_name="yolopatch")


app.command()(apply.apply)
app.command()(inject.inject)
app.command()(check.check)
app.command("layers")(layers.layers_command)
app.add_typer(ops.ops_app, name="ops")
