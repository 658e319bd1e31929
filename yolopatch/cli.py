"""The command line: the only module that talks to the user. Core errors arrive as YolopatchError."""

from __future__ import annotations

import inspect
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
    from yolopatch.operators import OPERATORS

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
    from yolopatch.apply import ApplyOptions, apply_into, apply_operator
    from yolopatch.channels import parse_channel_hints
    from yolopatch.files import read_text
    from yolopatch.render import changes_table

    _exclusive(("--in-place", in_place), ("-o/--output", output is not None))
    _exclusive(("--diff", diff), ("--check", check))
    if rewire is not None and not insert:
        raise typer.BadParameter("only means something with --insert", param_hint="--rewire")
    values: dict[str, Any] = {
        _FLAG_PARAMETERS[name]: value for name, value in operator_options.items() if value is not None
    }
    values.update(_settings(settings or []))
    _exclusive(("--each", each), ("--in-place", in_place))
    _exclusive(("--into", into is not None), ("--insert", insert))
    _exclusive(("--into", into is not None), ("--each", each))
    _exclusive(("--each", each), ("-o/--output", output is not None))
    with _errors():
        operator = _operator(op)
        hints = parse_channel_hints(channels or [])
        users = tuple(_user_operators().values())
        options = ApplyOptions(operator, values, insert, (rewire or Rewire.all).value, hints, scale, users)
        _option_values(options)
        if each:
            _apply_each(model, layers, options, force, diff, check)
            return
        suffix = model.suffix or ".yaml"
        if into is not None:
            result = apply_into(read_text(model), layers, options, into, name=str(model))
            written = result.changes[0].row.split()[0].lower() if result.changes else operator.name.lower()
        else:
            result = apply_operator(read_text(model), layers, options, name=str(model))
            written = operator.name.lower()
        target = model if in_place else output or model.with_name(f"{model.stem}-{written}{suffix}")
        for note in result.notes:
            err.print(f"note: {note}", markup=False)
        if target != model and target.exists() and not force and not diff and not check:
            if read_text(target) == result.text:
                err.print(f"{target}: already up to date; nothing written.")
                return
            raise YolopatchError(
                f"{target}: already exists. Pass --force to overwrite it, or -o to write elsewhere."
            )
        if not result.changed:
            err.print(f"{model}: already patched; nothing to change{'' if check else ', nothing written'}.")
            return
        change = FileChange(target, result.original, result.text, model)  # diffs compare with the input
        _finish([change], diff, check, f"{model}: would change {len(result.changes)} layer(s)")
    out.print(changes_table(result.changes))
    out.print(f"Wrote {target}", markup=False)
    from yolopatch.targets import target_named

    family = target_named(result.family)
    if into is not None:
        out.print(
            f"Next: yolopatch inject {family.inject_argument()} --for {target}   then: yolopatch check {target}",
            markup=False,
        )
    else:
        out.print(family.next_after_apply(target, [operator.name]), markup=False)


def _apply_each(model: Path, layers: str, options: Any, force: bool, diff: bool, check: bool) -> None:
    """apply --each: one variant file per edited layer, all written or none; then the check that compares
    them."""
    from yolopatch.apply import apply_each
    from yolopatch.files import read_text

    combined, variants = apply_each(read_text(model), layers, options, name=str(model))
    for note in combined.notes:
        err.print(f"note: {note}", markup=False)
    stem, suffix = model.stem, model.suffix or ".yaml"
    targets = [model.with_name(f"{stem}-{options.op.name.lower()}-L{v.layer}{suffix}") for v in variants]
    changes = [
        FileChange(target, v.result.original, v.result.text, model)
        for target, v in zip(targets, variants, strict=True)
        if not (target.exists() and read_text(target) == v.result.text)
    ]
    clashes = [str(c.path) for c in changes if c.path.exists()]
    if clashes and not force and not diff and not check:
        raise YolopatchError(
            f"{', '.join(clashes)}: already exist(s) with other contents. Pass --force to overwrite them."
        )
    if not changes:
        err.print(f"{model}: every variant is already up to date; nothing written.")
        return
    _finish(changes, diff, check, f"{model}: would write {len(changes)} variant(s)")
    for target, variant in zip(targets, variants, strict=True):
        (change,) = variant.result.changes
        out.print(f"{target}  layer {variant.layer}: {change.old} -> {change.row}", markup=False)
    out.print(
        f"Wrote {len(changes)} variant(s), one per layer: {stem}-{options.op.name.lower()}-L<layer>{suffix}."
    )
    pattern = model.with_name(f"{stem}-{options.op.name.lower()}-L*{suffix}")
    out.print(
        f"Next: yolopatch check {model} {pattern}   (one table, the first file as the reference)",
        markup=False,
    )


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
    _exclusive(("--diff", diff), ("--check", check))
    _exclusive(("--op", op is not None), ("--for", for_model is not None))
    _exclusive(("REPO", repo is not None), ("--installed", installed))
    if repo is None and not installed:
        raise typer.BadParameter(
            f"give a checkout, or --installed for the installed {_installable()}", param_hint="REPO"
        )
    with _errors():
        family, where = _inject_target(repo, installed, python or sys.executable)
        if python is not None and not family.installable:
            raise typer.BadParameter(f"only means something for {_installable()}", param_hint="--python")
        chosen = (
            _operators_for(for_model) if for_model else [_operator(n) for n in op.split(",")] if op else None
        )
        if into is not None:
            chosen = _with_variants(chosen or [_operator("involution")], into)
        plan, operators = _inject_plan(family, where, python or sys.executable, chosen, revert, force)
        target = where.label if installed or family.installable else str(repo)
        out.print(f"{target}: {plan.flavour}", markup=False)  # with the per-file lines below: one stream
        for warning in plan.warnings:
            err.print(f"warning: {warning}", markup=False)
        done = "nothing to revert" if revert else "already injected"
        if not plan.changed:
            err.print(f"{target}: {done}{'' if check else '; nothing written'}.")
            return
        state = "injected" if revert else "not fully injected"
        _finish(plan.changes, diff, check, f"{target}: {state}")
    for action in plan.actions:
        out.print(f"  {action}", markup=False)
    if not revert:
        out.print(family.next_after_inject(target, operators), markup=False)


def _installable() -> str:
    from yolopatch.targets import installable

    return " or ".join(target.installable for target in installable())


def _inject_target(repo: Path | None, installed: bool, python: str) -> tuple[Any, Any]:
    """The family and the checkout or package `inject` works on: REPO's, or the installed package's."""
    from yolopatch.targets import installable, locate

    if repo is not None:
        return locate(repo)
    (family, *_) = installable()
    return family, family.installed(python)


def _inject_plan(
    family: Any, where: Any, python: str, chosen: Sequence[Any] | None, revert: bool, force: bool
) -> tuple[Any, Sequence[Any]]:
    """The plan for the target, and the operators it is about: those chosen, else the ones already injected
    (so that injecting again after an upgrade restores them), else Involution. A revert without a choice
    removes every operator."""
    from yolopatch.operators import DEFAULT

    names = [o.name for o in chosen] if chosen else None
    operators = chosen or [_injected_operator(name) for name in family.injected(where)] or [DEFAULT]
    if revert:
        return family.revert(where, names, force), operators
    return family.inject(where, operators, force, python), operators


def _with_variants(operators: Sequence[Any], into: str) -> list[Any]:
    """Each operator, then its `--into` class for the CSP block `into`."""
    from yolopatch.csp import slot_of, variant_operator
    from yolopatch.targets import csp_blocks

    blocks = csp_blocks()
    if into not in blocks:
        raise OptionError("--into", f"--into {into}: the CSP blocks are {', '.join(sorted(blocks))}.")
    with_variants = []
    for op in operators:
        slot, why = slot_of(op)
        if slot is None:
            raise YolopatchError(f"--into {into}: {why}; it cannot go inside a bottleneck.")
        with_variants += [op, variant_operator(into, op)]
    return with_variants


def _injected_operator(name: str) -> Any:
    """An operator the target has a block for: a built-in, the user's own, or an `--into` class."""
    from yolopatch.csp import split_variant, variant_operator
    from yolopatch.operators import OPERATORS, get_operator
    from yolopatch.targets import csp_blocks

    users = _user_operators()
    known = {op.name: op for op in [*OPERATORS.values(), *users.values()]}
    parts = split_variant(name, csp_blocks(), known)
    if parts is not None:
        return variant_operator(parts[0], known[parts[1]])
    return get_operator(name, users)


def _operators_for(model: Path) -> list[Any]:
    from yolopatch.csp import operators_used
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.operators import OPERATORS
    from yolopatch.targets import csp_blocks

    parsed = parse_model_yaml(read_text(model), str(model))
    used = {layer.module for layer in parsed.layers}
    known = [*OPERATORS.values(), *_user_operators().values()]
    operators = operators_used(used, known, csp_blocks())
    if not operators:
        raise YolopatchError(
            f"{model}: uses none of the operators yolopatch adds ({', '.join(o.name for o in known)}); "
            "nothing to inject."
        )
    _refuse_changed(operators)
    return operators


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
    import dataclasses
    import json

    from yolopatch.render import export_line, operator_note, report_table, summary_line

    if fused or bench:
        with _errors():
            _target_of([*models, *([baseline] if baseline else [])], repo, "--fused" if fused else "--bench")
    if len(models) > 1 or table_format or bench:
        if export:
            raise typer.BadParameter("checks one model at a time", param_hint="--export")
        timing = (device, half, runs) if bench else None
        _compare(models, repo, scale, img, batch, baseline, as_json, table_format, fused, timing)
        return
    (model,) = models
    fmt = export.value if export else None
    with _errors(), err.status("building and running the model...", spinner="dots"):
        reports = [
            _check_one(path, repo, scale, img, batch, fmt if path == model else None, fused)
            for path in [model, *([baseline] if baseline else [])]
        ]
        exported = reports[0].export if fmt else None
    report, base = reports[0], (reports[1] if baseline else None)
    if as_json:
        data = {
            "model": dataclasses.asdict(report),
            "baseline": dataclasses.asdict(base) if base else None,
        }
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    for warning in report.warnings:
        err.print(f"note: {warning}", markup=False)
    out.print(report_table(report, out.width))
    out.print(summary_line(report, base), markup=False)
    if report.reference:
        owner = report.builder.split(" at ")[0] if report.builder else "the checkout"
        out.print(f"{owner}'s own summary (thop's count only): {report.reference}", markup=False)
    note = operator_note(report)
    if note:
        out.print(note, markup=False)
    if report.fused_params is not None:
        out.print(
            f"fused (Conv + BatchNorm folded, as the target's fuse()): {report.fused_modules} layers, "
            f"{report.fused_params} parameters, {report.fused_gflops:.1f} GFLOPs",
            markup=False,
        )
    out.print(
        f"forward and backward at {img}x{img}: ok; every parameter got a gradient; outputs finite.",
        markup=False,
    )
    if exported:
        out.print(export_line(exported), markup=False)


def _target(path: Path) -> Any:
    """The target whose parse_model a yaml is for, from its content; the parse is cached."""
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.targets import target_for

    return target_for(parse_model_yaml(read_text(path), str(path)).values)


def _target_of(paths: Sequence[Path], repo: Path | None, option: str) -> Any:
    """The one target the models belong to, for --fused and --bench (which time or fuse them together)."""
    families = {_target(p).name: _target(p) for p in paths}
    if len(families) > 1:
        raise YolopatchError(
            f"{option}: the models mix {' and '.join(families)} yamls; compare one family at a time."
        )
    (family,) = families.values()
    if repo is not None and not family.times_with_own_code:
        raise YolopatchError(
            f"{paths[0]}: {option} builds {family.name} yamls with yolopatch's own builder (the checkout's "
            "layers); leave out --repo."
        )
    return family


def _compare(
    models: Sequence[Path],
    repo: Path | None,
    scale: str | None,
    img: int,
    batch: int,
    baseline: Path | None,
    as_json: bool,
    table_format: TableFormat | None,
    fused: bool = False,
    timing: tuple[str, bool, int] | None = None,
) -> None:
    """check A.yaml B.yaml ...: one row per model against the reference (--baseline, else the first)."""
    import dataclasses
    import json

    from yolopatch.check import bench_builtin
    from yolopatch.files import read_text
    from yolopatch.render import comparison_rows, comparison_table, comparison_text

    paths = [*([baseline] if baseline else []), *models]
    with _errors(), err.status(f"building and running {len(paths)} models...", spinner="dots"):
        reports = _check_all(paths, repo, scale, img, batch, fused)
        conditions, latencies = None, None
        family: Any = _target_of(paths, repo, "--bench") if timing else None
        if timing and family.times_with_own_code:
            conditions, latencies = family.bench(
                [_request(p, repo, scale, img, batch, None, fused) for p in paths], timing
            )
        elif timing:
            device, half, runs = timing
            texts = [(read_text(path), report.name) for path, report in zip(paths, reports, strict=True)]
            _refuse_bench_of_users(texts)
            conditions, latencies = bench_builtin(texts, img, batch, device, half, fused, runs)
    rows = comparison_rows(reports, latencies=latencies)
    caption = conditions.label() if conditions else ""
    if as_json:
        data = {
            "models": [dataclasses.asdict(r) for r in reports],
            "comparison": rows,
            "latency_conditions": dataclasses.asdict(conditions) if conditions else None,
        }
        sys.stdout.write(json.dumps(data, indent=1) + "\n")
        return
    for report in reports:
        for warning in report.warnings:
            err.print(f"note: {report.name}: {warning}", markup=False)
    if table_format:
        sys.stdout.write(comparison_text(rows, table_format.value, caption))
        return
    out.print(comparison_table(rows, out.width, caption))
    out.print(
        f"forward and backward at {img}x{img}, batch {batch}: ok for every model; every parameter got a gradient.",
        markup=False,
    )


def _refuse_bench_of_users(texts: Sequence[tuple[str, str]]) -> None:
    """--bench times models in this process; a user's code runs only in a child."""
    from yolopatch.check import users_in

    users = {op.name for text, name in texts for op in users_in(text, name, list(_user_operators().values()))}
    if users:
        raise YolopatchError(
            f"--bench of models with your own operators ({', '.join(sorted(users))}) is not supported yet: "
            "yolopatch runs your code only in a child process; time them with your target's own tools."
        )


def _check_all(
    paths: Sequence[Path], repo: Path | None, scale: str | None, img: int, batch: int, fused: bool
) -> list[Any]:
    """Each model's report; the models of one family with a checkout are built in one child."""
    families = {_target(p).name: _target(p) for p in paths}
    requests = [_request(path, repo, scale, img, batch, None, fused) for path in paths]
    if len(families) == 1:
        (family,) = families.values()
        return family.check_many(requests)
    return [_target(r.path).check(r) for r in requests]


def _check_one(
    path: Path,
    repo: Path | None,
    scale: str | None,
    img: int,
    batch: int,
    export: str | None = None,
    fused: bool = False,
) -> Any:
    return _target(path).check(_request(path, repo, scale, img, batch, export, fused))


def _request(
    path: Path, repo: Path | None, scale: str | None, img: int, batch: int, export: str | None, fused: bool
) -> Any:
    """One check, with the user's operators the yaml uses (refused when their file changed since `ops add`)."""
    from yolopatch.check import users_in
    from yolopatch.files import read_text
    from yolopatch.targets.base import CheckRequest

    text = read_text(path)
    users = users_in(text, str(path), list(_user_operators().values()))
    _refuse_changed(users)
    return CheckRequest(path, text, repo, scale, img, batch, export, fused, tuple(users))


@app.command("layers")
def layers_command(model: ModelArg, channels: ChannelsOption = None, scale: ScaleOption = None) -> None:
    """List a model's layers with their indices, channels (at each scale) and strides, to choose --layers."""
    from yolopatch.channels import geometries, parse_channel_hints, simulate
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.render import layers_table

    with _errors():
        hints = parse_channel_hints(channels or [])
        parsed = parse_model_yaml(read_text(model), str(model))
        rows = parsed.logical_rows()
        sims = {
            name: simulate(rows, geo, str(model), hints)
            for name, geo in geometries(parsed.values, scale, tuple(_user_operators().values())).items()
        }
    for warning in next(iter(sims.values())).warnings:
        err.print(f"note: {warning}", markup=False)
    out.print(layers_table(parsed.layers, {name: sim.shapes for name, sim in sims.items()}, out.width))


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
        with _errors():
            users = _user_operators()
        out.print(operators_table(out.width, list(users.values())))


@ops_app.command("show", hidden=True)
def ops_show(name: Annotated[str, typer.Argument(metavar="NAME", help="One operator.")]) -> None:
    """One operator with its options and an example row (yours: with what `ops add` learned)."""
    from yolopatch.render import operator_detail

    with _errors():
        out.print(operator_detail(_operator(name, check_file=False)))


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
    from yolopatch.files import write_changes
    from yolopatch.render import learned_lines
    from yolopatch.userop import add_operator, installed_target, repo_target

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
    from yolopatch.files import write_changes
    from yolopatch.userop import remove_operator

    with _errors():
        change = remove_operator(name, Path.cwd())
        write_changes([change])
    out.print(f"{change.path}: removed [ops.{name}]", markup=False)


def _user_operators() -> dict[str, Any]:
    """The user's operators recorded in the nearest yolopatch.toml, as operators (no torch, no import)."""
    from yolopatch.userop import user_ops
    from yolopatch.userop.adapter import user_operators

    return user_operators(user_ops(Path.cwd()))


def _operator(name: str, check_file: bool = True) -> Any:
    """A built-in or a recorded operator; a recorded one whose file changed since `ops add` is refused."""
    from yolopatch.operators import get_operator

    users = _user_operators()
    try:
        op = get_operator(name, users)
    except YolopatchError as exc:
        raise typer.BadParameter(str(exc), param_hint="--op") from None
    if check_file:
        _refuse_changed([op])
    return op


def _refuse_changed(operators: Sequence[Any]) -> None:
    """A user's operator whose file changed since `ops add` learned it is not used until learned again."""
    for op in operators:
        changed = op.user.changed() if op.user is not None else None
        if changed:
            raise YolopatchError(changed + ".")


def _option_values(options: Any) -> None:
    try:
        options.resolved  # noqa: B018  (validates every value)
    except OptionError as exc:
        raise typer.BadParameter(str(exc), param_hint=exc.option) from None


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
