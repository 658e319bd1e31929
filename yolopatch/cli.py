"""The command line: the only module that talks to the user. Core errors arrive as YolopatchError."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer.core import TyperGroup

from yolopatch import __version__
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange

app = typer.Typer(
    name="yolopatch",
    help="Add operators (Involution, attention blocks, your own modules) to YOLO models: rewrite yamls, inject "
    "the modules, measure.",
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class TableFormat(str, Enum):
    markdown = "markdown"
    csv = "csv"
    latex = "latex"


class ExportFormat(str, Enum):
    onnx = "onnx"
    torchscript = "torchscript"


class Rewire(str, Enum):
    all = "all"
    next = "next"


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


@app.command()
@_with_operator_flags
def apply(
    model: ModelArg,
    layers: Annotated[
        str,
        typer.Option(
            "--layers",
            "-l",
            metavar="SEL",
            help="Which layers: 8, 2-8, backbone, head, C3, backbone:C3; comma-separated.",
        ),
    ],
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
    """Rewrite chosen layers of a model yaml to an operator, or insert one after them."""
    from yolopatch.commands.apply import apply_file
    from yolopatch.hints import after_apply
    from yolopatch.render import changes_table

    _apply_usage(in_place, output, diff, check, rewire, insert, each, into)
    with _errors():
        options = _apply_options(op, insert, rewire, channels, scale, settings, operator_options)
        if each:
            _apply_each(model, layers, options, force, diff, check)
            return
        result, written = apply_file(model, layers, options, into, output, in_place, force, diff or check)
        _notes(result.notes)
        if written.change is None:
            done = "" if check or written.skipped.endswith(".") else ", nothing written"
            err.print(f"{written.skipped}{done}.".replace("..", "."), markup=False)
            return
        _finish([written.change], diff, check, f"{model}: would change {len(result.changes)} layer(s)")
    out.print(changes_table(result.changes))
    out.print(f"Wrote {written.path}", markup=False)
    out.print(after_apply(result.target, written.path, written.checkout), markup=False)


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
    _exclusive(("--in-place", in_place), ("-o/--output", output is not None))
    _exclusive(("--diff", diff), ("--check", check))
    if rewire is not None and not insert:
        raise typer.BadParameter("only means something with --insert", param_hint="--rewire")
    _exclusive(("--each", each), ("--in-place", in_place))
    _exclusive(("--into", into is not None), ("--insert", insert))
    _exclusive(("--into", into is not None), ("--each", each))
    _exclusive(("--each", each), ("-o/--output", output is not None))


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
    values.update(_settings(settings or []))
    hints = parse_channel_hints(channels or [])
    users = tuple(user_operators().values())
    options = ApplyOptions(operator(op), values, insert, (rewire or Rewire.all).value, hints, scale, users)
    options.resolved  # noqa: B018  (validates every value: an OptionError is a usage error)
    return options


def _notes(notes: Sequence[str]) -> None:
    for note in notes:
        err.print(f"note: {note}", markup=False)


def _apply_each(model: Path, layers: str, options: Any, force: bool, diff: bool, check: bool) -> None:
    """apply --each: one variant file per edited layer, all written or none; then the check that compares
    them."""
    from yolopatch.commands.apply import apply_files
    from yolopatch.hints import after_each

    combined, variants, paths, changes = apply_files(model, layers, options, force, diff or check)
    _notes(combined.notes)
    if not changes:
        err.print(f"{model}: every variant is already up to date; nothing written.")
        return
    _finish(changes, diff, check, f"{model}: would write {len(changes)} variant(s)")
    for path, variant in zip(paths, variants, strict=True):
        (change,) = variant.result.changes
        out.print(f"{path}  layer {variant.layer}: {change.old} -> {change.row}", markup=False)
    stem, suffix, name = model.stem, model.suffix or ".yaml", options.op.name.lower()
    out.print(f"Wrote {len(changes)} variant(s), one per layer: {stem}-{name}-L<layer>{suffix}.")
    out.print(after_each(model, model.with_name(f"{stem}-{name}-L*{suffix}")), markup=False)


@app.command()
def inject(
    repo: Annotated[
        Path | None,
        typer.Argument(
            metavar="REPO",
            help="A checkout (its root folder, or its models/ folder), or an unpacked package; the family is "
            "found from its files.",
        ),
    ] = None,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed", help=f"Patch the package that Python imports (site-packages): {_installable()}."
        ),
    ] = False,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            metavar="PATH",
            help="The Python of the environment you train in (default: the one running yolopatch).",
        ),
    ] = None,
    op: Annotated[
        str | None,
        typer.Option(
            "--op",
            metavar="NAMES",
            help="Operators to inject, comma-separated (default: those already injected, else involution).",
        ),
    ] = None,
    for_model: Annotated[
        Path | None,
        typer.Option(
            "--for", metavar="MODEL.yaml", help="Inject exactly the operators this yaml uses.", dir_okay=False
        ),
    ] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Print unified diffs and write nothing.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 unless fully injected.")
    ] = False,
    revert: Annotated[
        bool,
        typer.Option(
            "--revert", help="Remove exactly what yolopatch added (all operators, or those of --op)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Disable a foreign class of the same name and inject ours; replace or revert a block you edited.",
        ),
    ] = False,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            metavar="C3|C2f|C3k2",
            help="Also the CSP block with the operators inside its bottlenecks (C2f_CBAM), as `apply --into` writes.",
        ),
    ] = None,
) -> None:
    """Put operators into a checkout or an installed package: the operator's class and its registration in
    parse_model, where that family's code needs them (the plan's first line names the layout found)."""
    from yolopatch.commands.inject import InjectRequest
    from yolopatch.commands.inject import inject as plan_inject
    from yolopatch.hints import after_inject

    _exclusive(("--diff", diff), ("--check", check))
    _exclusive(("--op", op is not None), ("--for", for_model is not None))
    _exclusive(("REPO", repo is not None), ("--installed", installed))
    if repo is None and not installed:
        raise typer.BadParameter(
            f"give a checkout, or --installed for the installed {_installable()}", param_hint="REPO"
        )
    request = InjectRequest(
        repo, python or sys.executable, python is not None, op, for_model, into, revert, force
    )
    with _errors():
        result = plan_inject(request)
        plan = result.plan
        out.print(
            f"{result.where}: {plan.flavour}", markup=False
        )  # with the per-file lines below: one stream
        for warning in plan.warnings:
            err.print(f"warning: {warning}", markup=False)
        if not plan.changed:
            done = "nothing to revert" if revert else "already injected"
            err.print(f"{result.where}: {done}{'' if check else '; nothing written'}.")
            return
        _finish(
            plan.changes, diff, check, f"{result.where}: {'injected' if revert else 'not fully injected'}"
        )
    for action in plan.actions:
        out.print(f"  {action}", markup=False)
    if not revert:
        out.print(after_inject(result.target, result.where, result.operators), markup=False)


def _installable() -> str:
    from yolopatch.commands.inject import installable_names

    return installable_names()


def _finish(changes: Sequence[FileChange], diff: bool, check: bool, pending: str) -> None:
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


@app.command()
def check(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="MODEL.yaml...",
            help="The model yaml; several give one comparison table, the first (or --baseline) as the reference.",
            dir_okay=False,
        ),
    ],
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            metavar="REPO",
            help="Build with this checkout's own code (its own Model class, in a child process) instead of "
            "yolopatch's built-in blocks or the installed package.",
        ),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale",
            metavar="X",
            help="For a yaml with scales: the scale (default: the one the file name implies).",
        ),
    ] = None,
    img: Annotated[
        int, typer.Option("--img", help="Input size for the forward and backward pass.", min=32)
    ] = 640,
    batch: Annotated[
        int, typer.Option("--batch", help="Batch size for the forward and backward pass.", min=1)
    ] = 1,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", metavar="BASE.yaml", help="Another yaml to compare against.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the data as JSON on stdout.")] = False,
    export: Annotated[
        ExportFormat | None,
        typer.Option(
            "--export",
            help="Also export the model (ONNX: torch's default exporter, dynamic batch and size; TorchScript: "
            "trace), run the file at this size and at another batch and size, and compare with eager.",
        ),
    ] = None,
    table_format: Annotated[
        TableFormat | None,
        typer.Option(
            "--format",
            help="Print the comparison of the models (and --baseline) as a table to paste: markdown, csv, latex.",
        ),
    ] = None,
    fused: Annotated[
        bool,
        typer.Option(
            "--fused", help="Also the figures after fusing (Conv + BatchNorm folded, as the target's fuse())."
        ),
    ] = False,
    bench: Annotated[
        bool,
        typer.Option(
            "--bench",
            help="Time the model forward (after warm-up, models in turns; median, quartiles, FPS), labelled with "
            "its conditions.",
        ),
    ] = False,
    device: Annotated[
        str, typer.Option("--device", metavar="DEV", help="--bench on this device: cpu, cuda, cuda:1.")
    ] = "cpu",
    half: Annotated[bool, typer.Option("--half", help="--bench in fp16 (CUDA).")] = False,
    runs: Annotated[int, typer.Option("--runs", help="--bench: timed runs per model.", min=5)] = 50,
) -> None:
    """Build model yamls, run them forward and backward, and print per-layer parameters and GFLOPs (several
    models: one comparison table)."""
    from yolopatch.commands.check import CheckOptions

    if (len(models) > 1 or table_format or bench) and export:
        raise typer.BadParameter("checks one model at a time", param_hint="--export")
    options = CheckOptions(repo, scale, img, batch, fused, (device, half, runs) if bench else None)
    if len(models) > 1 or table_format or bench:
        _compare([*([baseline] if baseline else []), *models], options, as_json, table_format)
        return
    _check_one(models[0], baseline, options, export.value if export else None, as_json)


def _check_one(model: Path, baseline: Path | None, options: Any, export: str | None, as_json: bool) -> None:
    """check MODEL.yaml [--baseline BASE.yaml]: the per-layer table and the summary line."""
    from yolopatch.commands.check import check_one
    from yolopatch.render import check_lines, report_table

    with _errors(), err.status("building and running the model...", spinner="dots"):
        report = check_one(model, options, export)
        base = check_one(baseline, options) if baseline else None
    if as_json:
        _json({"model": dataclasses.asdict(report), "baseline": dataclasses.asdict(base) if base else None})
        return
    _notes(report.warnings)
    out.print(report_table(report, out.width))
    for line in check_lines(report, base, options.img):
        out.print(line, markup=False)


def _compare(paths: Sequence[Path], options: Any, as_json: bool, table_format: TableFormat | None) -> None:
    """check A.yaml B.yaml ...: one row per model against the reference (--baseline, else the first)."""
    from yolopatch.commands.check import compare
    from yolopatch.render import comparison_rows, comparison_table, comparison_text

    with _errors(), err.status(f"building and running {len(paths)} models...", spinner="dots"):
        result = compare(paths, options)
    rows = comparison_rows(result.reports, latencies=result.latencies)
    caption = result.conditions.label() if result.conditions else ""
    if as_json:
        conditions = dataclasses.asdict(result.conditions) if result.conditions else None
        _json(
            {
                "models": [dataclasses.asdict(r) for r in result.reports],
                "comparison": rows,
                "latency_conditions": conditions,
            }
        )
        return
    _notes([f"{report.name}: {warning}" for report in result.reports for warning in report.warnings])
    if table_format:
        sys.stdout.write(comparison_text(rows, table_format.value, caption))
        return
    out.print(comparison_table(rows, out.width, caption))
    out.print(
        f"forward and backward at {options.img}x{options.img}, batch {options.batch}: ok for every model; every "
        "parameter got a gradient.",
        markup=False,
    )


def _json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=1) + "\n")


@app.command("layers")
def layers_command(model: ModelArg, channels: ChannelsOption = None, scale: ScaleOption = None) -> None:
    """List a model's layers with their indices, channels (at each scale) and strides, to choose --layers."""
    from yolopatch.commands.layers import list_layers
    from yolopatch.render import layers_table

    with _errors():
        result = list_layers(model, channels or [], scale)
    _notes(result.warnings)
    out.print(layers_table(result.layers, result.shapes, out.width))


class _OpsGroup(TyperGroup):
    """`yolopatch ops NAME` shows one operator: a word that is not a subcommand is a NAME."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "show", self.commands["show"], args
        return super().resolve_command(ctx, args)


ops_app = typer.Typer(
    cls=_OpsGroup,
    invoke_without_command=True,
    help="List the operators (built-in and your own); `ops NAME` shows one; `ops add FILE.py:CLASS` learns "
    "your own module; `ops remove NAME` forgets it.",
)
app.add_typer(ops_app, name="ops")


@ops_app.callback(invoke_without_command=True)
def ops_command(ctx: typer.Context) -> None:
    """List the operators yolopatch can add: paper, yaml arguments, channel rule, parameters."""
    from yolopatch.render import operators_table

    if ctx.invoked_subcommand is None:
        from yolopatch.commands.operators import user_operators

        with _errors():
            users = user_operators()
        out.print(operators_table(out.width, list(users.values())))


@ops_app.command("show", hidden=True)
def ops_show(name: Annotated[str, typer.Argument(metavar="NAME", help="One operator.")]) -> None:
    """One operator with its options and an example row (yours: with what `ops add` learned)."""
    from yolopatch.commands.operators import operator
    from yolopatch.render import operator_detail

    with _errors():
        out.print(operator_detail(operator(name, check_file=False)))


@ops_app.command("add")
def ops_add(
    spec: Annotated[str, typer.Argument(metavar="FILE.py:CLASS", help="Your module's file and class.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The yaml name (default: the class name).")
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule",
            metavar="RULE",
            help="Declare the rule: keep|conv|csp[:1|2|1/2|arg:PARAM|up:PARAM] (the probe confirms it).",
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="PARAM=ROLE", help="A parameter's role: c1, c2, n, stride, up or -."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="PARAM=VALUE", help="A constructor value (needed where there is no default)."
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", metavar="PATH", help="The checkout the file's imports come from."),
    ] = None,
    installed: Annotated[
        bool,
        typer.Option("--installed", help=f"The file imports the installed {_installable()} (of --python)."),
    ] = False,
    python: Annotated[
        str, typer.Option("--python", metavar="PATH", help="With --installed: the Python to probe in.")
    ] = sys.executable,
    force: Annotated[bool, typer.Option("--force", help="Replace a record of the same name.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="The probe's time limit.", min=1)
    ] = 120,
) -> None:
    """Learn your own module (read with ast, probed in a child process) and record it in yolopatch.toml."""
    from yolopatch.commands.ops import add_operator, installed_target, repo_target
    from yolopatch.files import write_changes
    from yolopatch.render import learned_lines

    _exclusive(("--repo", repo is not None), ("--installed", installed))
    with _errors():
        target = repo_target(repo) if repo else installed_target(python) if installed else None
        result = add_operator(
            spec, Path.cwd(), name, rule, maps or [], _settings(settings or []), force, target, timeout
        )
        write_changes([result.change])
    for line in learned_lines(result):
        out.print(line, markup=False)


@ops_app.command("remove")
def ops_remove(name: Annotated[str, typer.Argument(metavar="NAME", help="The operator to forget.")]) -> None:
    """Remove an operator's record from yolopatch.toml (its file stays; injected copies stay until
    `inject --revert --op NAME`)."""
    from yolopatch.commands.ops import remove_operator
    from yolopatch.files import write_changes

    with _errors():
        change = remove_operator(name, Path.cwd())
        write_changes([change])
    out.print(f"{change.path}: removed [ops.{name}]", markup=False)


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r}: write NAME=VALUE, e.g. e_lambda=1e-3", param_hint="--set")
        values[key.strip()] = value.strip()
    return values


def _exclusive(*flags: tuple[str, bool]) -> None:
    given = [name for name, on in flags if on]
    if len(given) > 1:
        raise typer.BadParameter(f"use either {given[0]} or {given[1]}, not both", param_hint=given[-1])


@contextmanager
def _errors() -> Iterator[None]:
    """Turn the one user-facing exception type into a message on stderr and exit code 1."""
    try:
        yield
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None
    except YolopatchError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    err.print(f"error: {message}", markup=False)
    raise typer.Exit(1)


def main() -> None:
    app(prog_name="yolopatch")
