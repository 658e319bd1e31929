"""The command line: the only place that talks to the user. Each command (one module here) parses its
options, calls one function in yolopatch.commands and renders; core errors arrive as YolopatchError."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from yolopatch import __version__
from yolopatch.cli import apply, check, inject, layers, ops
from yolopatch.cli.common import err, out


class _Group(TyperGroup):
    """Usage errors as one line on stderr (`error: ...`, exit 2), like every other error of yolopatch; a bare
    `yolopatch` prints the help."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:  # click's errors, which typer vendors
            text = exc.format_message()  # type: ignore[attr-defined]
            err.print(text if type(exc).__name__ == "NoArgsIsHelpError" else f"error: {text}", markup=False)
            code = exc.exit_code  # type: ignore[attr-defined]
        except typer.Abort:
            err.print("aborted.")
            code = 1
        if standalone_mode:
            sys.exit(code or 0)
        return code


app = typer.Typer(
    cls=_Group,
    name="yolopatch",
    help="Add operators (Involution, attention blocks, your own modules) to YOLO models: rewrite yamls, inject "
    "the modules, measure.",
    epilog="Example: yolopatch layers model.yaml",
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


app.command(epilog="Example: yolopatch apply model.yaml --layers 9 --insert --op cbam")(apply.apply)
app.command(epilog="Example: yolopatch inject path/to/checkout --for model-cbam.yaml")(inject.inject)
app.command(epilog="Example: yolopatch check model.yaml --img 320")(check.check)
app.command("layers", epilog="Example: yolopatch layers model.yaml")(layers.layers_command)
app.add_typer(ops.ops_app, name="ops")
