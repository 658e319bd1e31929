"""The command line: the only module that talks to the user. Core errors arrive as YolopatchError."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import NoReturn, Optional

import typer
from rich.console import Console

from yolopatch import __version__
from yolopatch.errors import YolopatchError

app = typer.Typer(
    name="yolopatch",
    help="Add Involution (Li et al., CVPR 2021) to YOLOv5 models: rewrite yamls, inject the module, measure.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Rewire(str, Enum):
    all = "all"
    next = "next"


def _version(value: bool) -> None:
    if value:
        out.print(f"yolopatch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """yolopatch: Involution for YOLOv5, without copy-pasting from blog posts."""


@app.command()
def apply(
    model: Path = typer.Argument(..., help="The model yaml to rewrite.", dir_okay=False),
    layers: str = typer.Option(
        ..., "--layers", "-l", help="Which layers: 8, 2-8, backbone, head, C3, backbone:C3; comma-separated."
    ),
    insert: bool = typer.Option(
        False, "--insert", help="Insert an Involution after each layer instead of replacing it."
    ),
    rewire: Rewire = typer.Option(
        Rewire.all,
        "--rewire",
        help="With --insert: 'all' feeds every consumer of the layer from the new one; "
        "'next' feeds only the next layer and keeps skip connections on the original.",
    ),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Where to write (default: STEM-involution.yaml)."
    ),
    in_place: bool = typer.Option(False, "--in-place", help="Rewrite MODEL itself."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    diff: bool = typer.Option(False, "--diff", help="Print a unified diff and write nothing."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 if the file would change."),
    kernel: int = typer.Option(7, "--kernel", "-k", help="Involution kernel size (odd)."),
    group_channels: int = typer.Option(
        16, "--group-channels", help="Channels per group that share a kernel."
    ),
    reduction: int = typer.Option(4, "--reduction", help="Reduction ratio of the kernel-generating branch."),
) -> None:
    """Rewrite chosen layers of a model yaml to Involution, or insert one after them."""
    from yolopatch.apply import InvolutionOptions, apply_involution
    from yolopatch.files import read_text, unified_diff, write_texts
    from yolopatch.render import changes_table

    if in_place and output is not None:
        raise typer.BadParameter("use either -o/--output or --in-place, not both", param_hint="--in-place")
    if diff and check:
        raise typer.BadParameter("use either --diff or --check, not both", param_hint="--check")
    target = (
        model if in_place else output or model.with_name(f"{model.stem}-involution{model.suffix or '.yaml'}")
    )
    options = InvolutionOptions(insert, kernel, group_channels, reduction, rewire.value)
    with _errors():
        result = apply_involution(read_text(model), layers, options, name=str(model))
        for note in result.notes:
            err.print(f"note: {note}", markup=False)
        if diff:
            sys.stdout.write(unified_diff(result.original, result.text, str(model), str(target)))
            return
        if check:
            if result.changed:
                err.print(
                    f"{model}: would change {len(result.changes)} layer(s); run without --check to write."
                )
                raise typer.Exit(1)
            err.print(f"{model}: already patched; nothing to change.")
            return
        if not result.changed:
            err.print(f"{model}: already patched; nothing to change, nothing written.")
            return
        if target != model and target.exists() and not force:
            if read_text(target) == result.text:
                err.print(f"{target}: already up to date; nothing written.")
                return
            raise YolopatchError(
                f"{target}: already exists. Pass --force to overwrite it, or -o to write elsewhere."
            )
        write_texts({target: result.text})
    out.print(changes_table(result.changes))
    out.print(f"Wrote {target}", markup=False)
    out.print(
        f"Next: yolopatch inject PATH/TO/yolov5   (once per checkout), then:\n      yolopatch check {target}",
        markup=False,
    )


@app.command("layers")
def layers_command(model: Path = typer.Argument(..., help="The model yaml.", dir_okay=False)) -> None:
    """List a model's layers with their indices, channels and strides, to choose --layers."""
    from yolopatch.channels import geometry, simulate
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.render import layers_table

    with _errors():
        parsed = parse_model_yaml(read_text(model), str(model))
        simulation = simulate(parsed.logical_rows(), geometry(parsed.values))
    for warning in simulation.warnings:
        err.print(f"note: {warning}", markup=False)
    out.print(layers_table(parsed, simulation.shapes))


class _errors:
    """Turn the one user-facing exception type into a message on stderr and exit code 1."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type | None, exc: BaseException | None, tb: object) -> bool:
        if isinstance(exc, YolopatchError):
            _fail(str(exc))
        return False


def _fail(message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="yolopatch")
