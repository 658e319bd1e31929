"""The command line: the only module that talks to the user. Core errors arrive as YolopatchError."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
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
    out.print(_next_after_apply(target), markup=False)


def _next_after_apply(target: Path) -> str:
    """The next command: for a yaml inside a checkout, that checkout (and no inject step once it is done)."""
    from yolopatch.inject import enclosing_checkout, plan_inject

    root = enclosing_checkout(target)
    if root is None:
        return f"Next: yolopatch inject PATH/TO/yolov5   (once per checkout), then:\n      yolopatch check {target}"
    try:
        injected = not plan_inject(root).changed
    except YolopatchError:
        injected = False
    check = f"yolopatch check {target} --repo {root}"
    return f"Next: {check}" if injected else f"Next: yolopatch inject {root}   (once), then:\n      {check}"


@app.command()
def inject(
    repo: Path = typer.Argument(
        ..., help="A YOLOv5 (or yolov3) checkout, its models/ folder, or the yolov5 package."
    ),
    diff: bool = typer.Option(False, "--diff", help="Print unified diffs and write nothing."),
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 unless fully injected."),
    revert: bool = typer.Option(False, "--revert", help="Remove exactly what yolopatch added."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Disable a foreign `class Involution` and inject ours; replace or revert a block you edited.",
    ),
) -> None:
    """Put the Involution module into models/common.py and register it in models/yolo.py."""
    from yolopatch.files import unified_diff, write_texts
    from yolopatch.inject import plan_inject, plan_revert

    if diff and check:
        raise typer.BadParameter("use either --diff or --check, not both", param_hint="--check")
    with _errors():
        result = plan_revert(repo, force=force) if revert else plan_inject(repo, force=force)
        err.print(f"{result.checkout.models}: {result.flavour.describe()}", markup=False)
        if check:
            if result.changed:
                err.print(f"{repo}: {'injected' if revert else 'not fully injected'}; run without --check.")
                raise typer.Exit(1)
            err.print(f"{repo}: {'nothing to revert' if revert else 'already injected'}.")
            return
        if not result.changed:
            err.print(f"{repo}: {'nothing to revert' if revert else 'already injected'}; nothing written.")
            return
        changed = {path: text for path, text in result.new.items() if result.old[path] != text}
        if diff:
            for path, text in changed.items():
                sys.stdout.write(unified_diff(result.old[path], text, str(path), str(path)))
            return
        write_texts(changed)
    for action in result.actions:
        out.print(f"  {action}", markup=False)
    for warning in result.warnings:
        err.print(f"warning: {warning}", markup=False)
    if not revert:
        out.print(
            "Next: yolopatch apply MODEL.yaml --layers 8   (writes MODEL-involution.yaml), then:\n"
            f"      yolopatch check MODEL-involution.yaml --repo {repo}",
            markup=False,
        )


@app.command()
def check(
    model: Path = typer.Argument(..., help="The model yaml to build.", dir_okay=False),
    repo: Optional[Path] = typer.Option(
        None, "--repo", help="Build with this YOLOv5 checkout's own Model class."
    ),
    img: int = typer.Option(640, "--img", help="Input size for the forward and backward pass."),
    batch: int = typer.Option(1, "--batch", help="Batch size for the forward and backward pass."),
    baseline: Optional[Path] = typer.Option(None, "--baseline", help="Another yaml to compare against."),
    as_json: bool = typer.Option(False, "--json", help="Print the data as JSON on stdout."),
) -> None:
    """Build a model yaml, run it forward and backward, and print per-layer parameters and GFLOPs."""
    import dataclasses
    import json

    from yolopatch.render import involution_note, report_table, summary_line

    if img < 32 or batch < 1:
        raise typer.BadParameter("--img must be at least 32 and --batch at least 1", param_hint="--img")
    with _errors(), err.status("building and running the model...", spinner="dots"):
        reports = [_check_one(path, repo, img, batch) for path in [model, *([baseline] if baseline else [])]]
    report, base = reports[0], (reports[1] if baseline else None)
    if as_json:
        data = {"model": dataclasses.asdict(report), "baseline": dataclasses.asdict(base) if base else None}
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    for warning in report.warnings:
        err.print(f"note: {warning}", markup=False)
    out.print(report_table(report))
    out.print(summary_line(report, base), markup=False)
    if report.reference:
        out.print(f"the checkout's own summary (no aggregation): {report.reference}", markup=False)
    note = involution_note(report)
    if note:
        out.print(note, markup=False)
    out.print(
        f"forward and backward at {img}x{img}: ok; every parameter got a gradient; outputs finite.",
        markup=False,
    )


def _check_one(path: Path, repo: Optional[Path], img: int, batch: int):
    from yolopatch.check import check_builtin, check_with_repo
    from yolopatch.files import read_text

    if repo is not None:
        return check_with_repo(repo, path, img, batch)
    return check_builtin(read_text(path), str(path), img, batch)


@app.command("layers")
def layers_command(model: Path = typer.Argument(..., help="The model yaml.", dir_okay=False)) -> None:
    """List a model's layers with their indices, channels and strides, to choose --layers."""
    from yolopatch.channels import geometry, simulate
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.render import layers_table

    with _errors():
        parsed = parse_model_yaml(read_text(model), str(model))
        simulation = simulate(parsed.logical_rows(), geometry(parsed.values), str(model))
    for warning in simulation.warnings:
        err.print(f"note: {warning}", markup=False)
    out.print(layers_table(parsed, simulation.shapes))


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the one user-facing exception type into a message on stderr and exit code 1."""
    try:
        yield
    except YolopatchError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="yolopatch")
