"""`yolopatch apply`: its options (the operators' own flags included), one call into commands.apply, the table."""

from __future__ import annotations

import inspect
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from yolopatch.cli.common import (
    ChannelsOption,
    ModelArg,
    Rewire,
    ScaleOption,
    err,
    errors,
    exclusive,
    finish,
    name_values,
    notes,
    out,
)


def _operator_flag_parameters() -> dict[str, inspect.Parameter]:
    """One command-line option per flag the operators' specs declare (`--kernel`, `--reduction`, ...), its
    help gathered from every operator that has it: a new operator's options appear by themselves."""
    from yolopatch.operators.registry import OPERATORS

    by_flag: dict[str, list[tuple[str, Any]]] = {}
    for op in OPERATORS.values():
        for option in op.options:
            if option.has_flag:
                by_flag.setdefault(option.flag, []).append((op.name, option))
    parameters = {}
    for flag, owners in by_flag.items():
        shorts = sorted({option.short for _, option in owners if option.short})
        text = "; ".join(f"{name}: {option.help} ({option.default})" for name, option in owners)
        name = flag.lstrip("-").replace("-", "_")
        annotation = Annotated[
            str | None,
            typer.Option(flag, *shorts, metavar="VALUE", help=f"{text}.", rich_help_panel="Operator options"),
        ]
        parameters[name] = inspect.Parameter(
            name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation
        )
    return parameters


_FLAG_OPTIONS = _operator_flag_parameters()
_FLAG_PARAMETERS = {name: name.replace("_", "-") for name in _FLAG_OPTIONS}  # parameter -> flag, no dashes


def _with_operator_flags(command: Any) -> Any:
    """Give `command` (which takes them as **operator_options) the operators' flags in its signature."""
    signature = inspect.signature(command, eval_str=True)
    fixed = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    command.__signature__ = signature.replace(parameters=[*fixed, *_FLAG_OPTIONS.values()])
    return command


@_with_operator_flags
def apply(
    model: ModelArg,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layers",
            "-l",
            metavar="SEL",
            help="Which layers: 8, 2-8, backbone, head, C3, backbone:C3; comma-separated.",
        ),
    ] = None,
    op: Annotated[
        str, typer.Option("--op", metavar="NAME", help="The operator (see `yolopatch ops`).")
    ] = "involution",
    insert: Annotated[
        bool, typer.Option("--insert", help="Insert the operator after each layer instead of replacing it.")
    ] = False,
    rewire: Annotated[
        Rewire | None,
        typer.Option(
            "--rewire",
            help="With --insert: 'all' (default) feeds every consumer of the layer from the new one; "
            "'next' feeds only the next layer and keeps skip connections on the original.",
        ),
    ] = None,
    sources: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="A,B",
            help="With --insert of a fusion operator: the other layers the new row reads, besides the selected one.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", metavar="PATH", help="Where to write (default: STEM-OP.yaml)."),
    ] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite MODEL.yaml itself.")] = False,
    each: Annotated[
        bool,
        typer.Option(
            "--each",
            help="One file per selected layer (STEM-OP-LN.yaml: the operator at layer N only), for ablations.",
        ),
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff and write nothing.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the file would change.")
    ] = False,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="NAME=VALUE", help="Any operator option by name, e.g. --set e_lambda=1e-3."
        ),
    ] = None,
    channels: ChannelsOption = None,
    scale: ScaleOption = None,
    backbone: Annotated[
        str | None,
        typer.Option(
            "--backbone",
            metavar="NAME",
            help="Swap the backbone: the stock rows that make the levels become one row of NAME (a backbone "
            "recorded by `ops add`) and one Index row per level.",
        ),
    ] = None,
    levels: Annotated[
        str | None,
        typer.Option(
            "--levels",
            metavar="P3,P4,P5",
            help="With --backbone: the levels the rest of the model reads from it (default P3,P4,P5).",
        ),
    ] = None,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            metavar="C3|C2f|C3k2|csp",
            help="Put the operator inside each bottleneck of the selected CSP rows (C2f_CBAM, C3_SE); "
            "csp: the block each row already is.",
        ),
    ] = None,
    **operator_options: str | None,
) -> None:
    """Rewrite chosen layers of a model yaml to an operator, or insert one after them.

    Writes STEM-OP.yaml beside the input (or -o PATH, or --in-place) once its channels check out; --diff and --check write nothing. `yolopatch ops` lists the operators, `yolopatch layers` the layer indices.
    """
    from yolopatch.commands.apply import apply_file
    from yolopatch.hints import after_apply
    from yolopatch.render.model import changes_table

    _apply_usage(in_place, output, diff, check, rewire, insert, each, into)
    layers = _backbone_usage(layers, backbone, levels, insert, each, into)
    with errors():
        options = _apply_options(backbone or op, insert, rewire, channels, scale, settings, operator_options)
        options = replace(options, sources=_sources(sources), levels=_levels(backbone, levels))
        if _apply_other_format(
            model, layers, options, (each, into, channels, scale), output, in_place, force, diff, check
        ):
            return
        if each:
            _apply_each(model, layers, options, force, diff, check)
            return
        result, written = apply_file(model, layers, options, into, output, in_place, force, diff or check)
        notes(result.notes)
        if written.change is None:
            err.print(f"{written.skipped}; nothing written.", markup=False)
            return
        finish([written.change], diff, check, f"{model}: would change {len(result.changes)} layer(s)")
    out.print(changes_table(result.changes))
    out.print(f"Wrote {written.path}", markup=False)
    out.print(after_apply(result.target, written.path, written.checkout), markup=False)


def _backbone_usage(
    layers: str | None, backbone: str | None, levels: str | None, insert: bool, each: bool, into: Any
) -> str:
    """--layers, or --backbone (with --levels), and not both."""
    if backbone is None:
        if levels is not None:
            raise typer.BadParameter("only means something with --backbone", param_hint="--levels")
        if layers is None:
            raise typer.BadParameter("name the layers to change (or --backbone NAME)", param_hint="--layers")
        return layers
    exclusive(("--backbone", True), ("--layers", layers is not None))
    exclusive(("--backbone", True), ("--insert", insert))
    exclusive(("--backbone", True), ("--each", each))
    exclusive(("--backbone", True), ("--into", into is not None))
    return "backbone"


def _levels(backbone: str | None, text: str | None) -> tuple[int, ...]:
    from yolopatch.edit.backbone import parse_levels

    return parse_levels(text) if backbone is not None else ()


def _sources(text: str | None) -> tuple[int, ...]:
    """--from A,B: layer numbers of the input file."""
    if text is None:
        return ()
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter(
            f"{text}: write layer numbers, e.g. --from 4,6", param_hint="--from"
        ) from None


def _apply_usage(
    in_place: bool,
    output: Path | None,
    diff: bool,
    check: bool,
    rewire: Any,
    insert: bool,
    each: bool,
    into: Any,
) -> None:
    exclusive(("--in-place", in_place), ("-o/--output", output is not None))
    exclusive(("--diff", diff), ("--check", check))
    if rewire is not None and not insert:
        raise typer.BadParameter("only means something with --insert", param_hint="--rewire")
    exclusive(("--each", each), ("--in-place", in_place))
    exclusive(("--into", into is not None), ("--insert", insert))
    exclusive(("--into", into is not None), ("--each", each))
    exclusive(("--each", each), ("-o/--output", output is not None))


def _apply_options(
    op: str,
    insert: bool,
    rewire: Rewire | None,
    channels: list[str] | None,
    scale: str | None,
    settings: list[str] | None,
    operator_options: dict[str, str | None],
) -> Any:
    from yolopatch.channels import parse_channel_hints
    from yolopatch.commands.apply import ApplyOptions
    from yolopatch.commands.operators import operator, user_operators

    values: dict[str, Any] = {
        _FLAG_PARAMETERS[name]: value for name, value in operator_options.items() if value is not None
    }
    values.update(name_values(settings or []))
    hints = parse_channel_hints(channels or [])
    users = tuple(user_operators().values())
    options = ApplyOptions(operator(op), values, insert, (rewire or Rewire.all).value, hints, scale, users)
    options.resolved  # noqa: B018  (validates every value: an OptionError is a usage error)
    return options


def _apply_each(model: Path, layers: str, options: Any, force: bool, diff: bool, check: bool) -> None:
    """apply --each: one variant file per edited layer, all written or none; then the check that compares
    them."""
    from yolopatch.commands.apply import apply_files
    from yolopatch.hints import after_each

    combined, variants, paths, changes = apply_files(model, layers, options, force, diff or check)
    notes(combined.notes)
    if not changes:
        err.print(f"{model}: every variant is already up to date; nothing written.")
        return
    finish(changes, diff, check, f"{model}: would write {len(changes)} variant(s)")
    for path, variant in zip(paths, variants, strict=True):
        (change,) = variant.result.changes
        out.print(f"{path}  layer {variant.layer}: {change.old} -> {change.row}", markup=False)
    stem, suffix, name = model.stem, model.suffix or ".yaml", options.op.name.lower()
    out.print(f"Wrote {len(changes)} variant(s), one per layer: {stem}-{name}-L<layer>{suffix}.")
    out.print(after_each(model, model.with_name(f"{stem}-{name}-L*{suffix}")), markup=False)


def _apply_other_format(
    model: Path,
    layers: str,
    options: Any,
    unsupported: tuple[Any, ...],
    output: Path | None,
    in_place: bool,
    force: bool,
    diff: bool,
    check: bool,
) -> bool:
    """apply on a model file of another format than the yaml (a darknet .cfg, ...): False for a yaml."""
    from yolopatch.commands.apply import apply_format_file, model_format
    from yolopatch.render.model import changes_table

    fmt = model_format(model)
    if fmt is None:
        return False
    flags = ("--each", "--into", "--channels", "--scale")
    given = [flag for flag, value in zip(flags, unsupported, strict=True) if value]
    result, written = apply_format_file(
        model, fmt, layers, options, given, output, in_place, force, diff or check
    )
    notes(result.notes)
    if written.change is None:
        err.print(f"{written.skipped}; nothing written.", markup=False)
        return True
    finish([written.change], diff, check, f"{model}: would change {len(result.changes)} layer(s)")
    out.print(changes_table(result.changes))
    out.print(f"Wrote {written.path}", markup=False)
    out.print(fmt.next_steps(result, written.path), markup=False)
    return True
