"""`apply`'s decisions for a fusion class (a user's module whose forward takes a list of maps): which rows
it may replace (a Concat, another fusion row) or follow (`--insert --from A,B`), checked at every scale
against what `ops add` learned: the number of inputs, their widths and sizes, the divisor; and the argument
that reproduces the row's output channels where its rule has one."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from yolopatch.channels import Geometry, Simulation, common_argument, normalize_module
from yolopatch.edit.decide import Context
from yolopatch.errors import OptionError
from yolopatch.modelyaml import Layer


def fusion_inputs(layer: Layer, options_sources: Sequence[int], insert: bool) -> list[int]:
    """The absolute indices the fusion row reads: the row's own `from` (replaced), or the row and --from."""
    if insert:
        return [layer.index, *options_sources]
    sources = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    return [layer.index + f if f < 0 else f for f in sources]


def check_sources(sources: Sequence[int], count: int, fusion: bool, insert: bool) -> None:
    """`--from A,B`: only with --insert of a fusion class, and only earlier layers of the input file."""
    if sources and not (fusion and insert):
        raise OptionError(
            "--from",
            "--from names the other inputs of an inserted fusion row: use it with --insert and a fusion operator.",
        )
    if fusion and insert and not sources:
        raise OptionError(
            "--from",
            "an inserted fusion row reads the selected layer and others: name them with --from A,B (the "
            "input file's layer numbers).",
        )
    wrong = [s for s in sources if not 0 <= s < count]
    if wrong:
        raise OptionError("--from", f"--from {wrong[0]}: the file has layers 0 to {count - 1}.")


def decide_fusion(
    context: Context, geos: Mapping[str, Geometry], layer: Layer, sims: Mapping[str, Simulation]
) -> tuple[str | None, int | None]:
    """Why the row cannot take the fusion class (None: it can), and the argument that gives the row's own
    output channels at every scale (None: its rule has no channel argument)."""
    options, op = context.options, context.options.op
    rule = op.fusion
    module = normalize_module(layer.module)
    if not options.insert:
        reason = _why_not_replace(context, layer, module)
        if reason:
            return reason, None
    elif set(options.sources) & {layer.index}:
        return f"--from {layer.index} is the row itself, which the new row reads already", None
    elif any(s > layer.index for s in options.sources):
        later = next(s for s in options.sources if s > layer.index)
        return f"--from {later} comes after it: a row reads only earlier layers", None
    inputs = fusion_inputs(layer, options.sources, options.insert)
    for scale, sim in sims.items():
        shapes = [sim.shapes[i] for i in inputs]
        problem = _input_problem(rule, op, shapes, inputs) or _size_problem(
            rule, shapes, inputs, sim.shapes[layer.index]
        )
        if problem:
            at = f"at scale {scale}: " if scale else ""
            return f"{at}{problem}", None
    if not rule.out_param:
        return None, None
    channels = {scale: sim.shapes[layer.index].c2 for scale, sim in sims.items()}
    known = {scale: c for scale, c in channels.items() if c is not None}
    argument = common_argument(known, geos) if len(known) == len(channels) else None
    if argument is None:
        per_scale = ", ".join(f"{scale} {c}" for scale, c in channels.items())
        return f"no single {rule.out_param} gives the row's channels at every scale ({per_scale})", None
    return None, argument


def _why_not_replace(context: Context, layer: Layer, module: str) -> str | None:
    op = context.options.op
    if module == op.name:
        return f"already {context.one}"
    if isinstance(layer.source, int):
        return (
            f"{op.name} fuses several layers and this row reads one; replace a row with a `from` list (a "
            f"Concat), or insert one with --insert --from A,B"
        )
    if module != "Concat" and module not in context.geo.rules.fusion:
        return f"it is a {module} row; {op.name} replaces a Concat or another fusion row"
    return None


def _size_problem(rule: Any, shapes: Sequence[Any], inputs: Sequence[int], row: Any) -> str | None:
    """The fusion row's output must have the size the row it replaces (or follows) has: the rows reading it
    expect that size."""
    k = min(rule.sized_by(len(shapes)), len(shapes) - 1)
    if row.stride is None or shapes[k].stride == row.stride:
        return None
    return (
        f"its output would have input {inputs[k]}'s size (stride {shapes[k].stride}) and the rows reading this "
        f"one expect stride {row.stride}; choose inputs whose input {k} has that size"
    )


def _input_problem(rule: Any, op: Any, shapes: Sequence[Any], inputs: Sequence[int]) -> str | None:
    widths = [s.c2 for s in shapes]
    strides = [s.stride for s in shapes]
    if None in widths or None in strides:
        return f"the channels or sizes of its inputs {list(inputs)} are unknown"
    problem = rule.problem(widths, [Fraction(s) for s in strides])
    if problem:
        shown = ", ".join(f"{i}: {w} ch /{s}" for i, w, s in zip(inputs, widths, strides, strict=True))
        return f"{op.name}: {problem} (inputs {shown})"
    divisor = op.user.divisor if op.user is not None else 1
    bad = next(((i, w) for i, w in zip(inputs, widths, strict=True) if w % divisor), None)
    if bad is not None:
        return f"{op.name} needs channels divisible by {divisor} (learned by `ops add`), and input {bad[0]} has {bad[1]}"
    return None
