"""`apply`'s decisions: whether a selected layer can take the operator (replaced, inserted after, or
filled `--into`), and with which first argument, at every scale; each refusal says why in one line."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

from yolopatch.channels import (
    Assumption,
    Geometry,
    Shape,
    argument_for_channels,
    common_argument,
    layer_stride,
    normalize_module,
)
from yolopatch.csp import CspBlock, slot_channels, split_variant, variant_name
from yolopatch.edit.options import ApplyOptions
from yolopatch.modelyaml import Layer, ModelYaml, line_col
from yolopatch.operators.spec import Operator
from yolopatch.rules import Rules


def verb(options: ApplyOptions) -> str:
    name = options.op.name
    return (
        f"insert {article(name)} {name} after it"
        if options.insert
        else f"replace it with {article(name)} {name}"
    )


def article(name: str) -> str:
    """'an Involution', 'an SE', 'an ECA', 'a CBAM': by how the name is spoken."""
    return "an" if name[0] in "AEIOU" or name[:2] in ("SE", "SK") else "a"


def place_of(model: ModelYaml, layer: Layer) -> str:
    return f"{model.name}:{line_col(model.text, layer.row.start)}: layer {layer.index} ({layer.module})"


@dataclass(frozen=True)
class Context:
    """What every per-layer decision reads: the model, its geometry, the options and resolved values."""

    model: ModelYaml
    geo: Geometry
    options: ApplyOptions
    values: Mapping[str, Any]

    @property
    def one(self) -> str:
        """'an Involution', 'a CBAM'."""
        return f"{article(self.options.op.name)} {self.options.op.name}"


def decide(
    context: Context, geos: Mapping[str, Geometry], layer: Layer, shapes: Mapping[str, Shape]
) -> tuple[str | None, int | None]:
    """Why the layer cannot be changed at some scale (None: it can), and the inserted operator's argument,
    one value that reproduces the layer's channels at every scale."""
    reasons = {
        scale: why_not(replace(context, geo=geos[scale]), layer, shape) for scale, shape in shapes.items()
    }
    failing = [scale for scale, reason in reasons.items() if reason]
    if failing:
        reason = reasons[failing[0]] or ""
        if reason.startswith("already") or len(failing) == len(reasons):
            return reason, None
        others = ", ".join(scale for scale in reasons if scale not in failing)
        return (
            f"at scale {', '.join(failing)}: {reason} (--scale {others.split(', ')[0]} writes for one of {others})",
            None,
        )
    resampled = replaces_upsample(context.options, layer)
    if not context.options.insert and not resampled:
        return None, None
    # an inserted operator gets the layer's output channels; one in place of nn.Upsample its input's
    counts = {scale: s.c1 if resampled else s.c2 for scale, s in shapes.items()}
    channels = {scale: c for scale, c in counts.items() if c is not None}
    argument = common_argument(channels, geos)
    if argument is None:
        per_scale = ", ".join(f"{scale} {c}" for scale, c in channels.items())
        return (
            f"no single {context.options.op.name} argument gives its channels at every scale ({per_scale}; "
            "max_channels clamps the argument before width scales it). Insert after another layer, or write "
            "for one scale with --scale X"
        ), None
    return None, argument


def why_not(context: Context, layer: Layer, shape: Shape) -> str | None:
    """Why the selected layer cannot be changed as asked (None: it can; "already ...": nothing to do)."""
    if context.options.insert:
        return why_not_insert(context, layer, shape)
    op, module, one, values = context.options.op, normalize_module(layer.module), context.one, context.values
    rules = context.geo.rules
    if module == op.name:
        wanted = op.yaml_args(layer.args[0], row_stride(layer, rules), values) if layer.args else []
        return f"already {one}" if list(layer.args) == wanted else existing(op.name, list(layer.args), wanted)
    if not isinstance(layer.source, int):
        return f"it takes several inputs ({list(layer.source)}); {one} takes one"
    if replaces_upsample(context.options, layer):
        return why_not_resample(context, layer, shape)
    if op.upsamples:
        return f"{op.name} upsamples: it replaces an nn.Upsample row, not a layer of stride {whole_stride(layer, rules)}"
    if module in rules.not_replaceable:
        return rules.not_replaceable[module].format(op=one)
    if module not in rules.channel_modules:
        return f"yolopatch does not know {module}'s output channels"
    if not layer.args or not isinstance(layer.args[0], int):
        return f"its first argument {layer.args[:1]} is not an output channel count"
    stride = whole_stride(layer, rules)
    if stride is None:
        return f"its stride {list(layer.args[2:3])} is not a positive whole number"
    unsure = unsure_reason("input", shape.c1, shape.c1_assumed)
    if unsure or shape.c1 is None:
        return unsure
    if op.keeps_channels and op.own_stride == 1 and (shape.c1 != shape.c2 or stride != 1):
        return f"{op.name} keeps channels and size; {change_of(shape, stride)}: use --insert"
    if op.own_stride is not None and stride != op.own_stride:
        return f"{op.name} has stride {op.own_stride} and this layer {stride}: it replaces layers of stride {op.own_stride}"
    if op.keeps_channels and shape.c1 != shape.c2:
        return f"{op.name} keeps channels; {change_of(shape, 1)}"
    if op.channel_multiple and shape.c2 != op.channel_multiple * shape.c1:
        return f"{op.name} outputs {op.channel_multiple}x its input's channels; this layer has {shape.c1} in, {shape.c2} out"
    problem = op.channel_problem(shape.c1, values)
    if problem is None and op.user is not None and shape.c2 is not None:
        return op.channel_problem(shape.c2, values)  # a user's learned constraint holds for its output too
    return problem


def replaces_upsample(options: ApplyOptions, layer: Layer) -> bool:
    return not options.insert and options.op.upsamples and normalize_module(layer.module) == "nn.Upsample"


def why_not_resample(context: Context, layer: Layer, shape: Shape) -> str | None:
    """An upsampling operator in place of nn.Upsample: the factor must be one it can have."""
    op, step = context.options.op, layer_stride(layer.module, layer.args, context.geo.rules)
    if step is None or step >= 1 or (1 / step).denominator != 1:
        return f"its scale factor {list(layer.args[1:2])} is not a whole number"
    if op.own_stride is not None and step != op.own_stride:
        return f"{op.name} upsamples by {1 / op.own_stride} and this layer by {1 / step}"
    unsure = unsure_reason("input", shape.c1, shape.c1_assumed)
    if unsure or shape.c1 is None:
        return unsure
    return op.channel_problem(shape.c1, context.values)


def why_not_insert(context: Context, layer: Layer, shape: Shape) -> str | None:
    model, geo, options, values = context.model, context.geo, context.options, context.values
    op, module, one = options.op, normalize_module(layer.module), context.one
    following = model.layers[layer.index + 1] if layer.index + 1 < len(model.layers) else None
    if module == op.name:
        return f"already {one}"
    if module in geo.rules.heads:
        return f"{module} is the model's output; nothing can follow it"
    if op.upsamples or (op.own_stride is not None and op.own_stride != 1):
        how = "upsamples" if op.upsamples else f"has stride {op.own_stride}"
        return (
            f"{op.name} {how}: inserted, it would change the size of every later layer; replace a layer of "
            "that stride instead (an nn.Upsample row for an upsampler)"
        )
    if op.channel_multiple:
        return (
            f"{op.name} outputs {op.channel_multiple}x its input's channels: inserted, it would change the "
            "channels of every later layer; replace a layer that does that instead"
        )
    if (
        shape.c2 is None and module in geo.rules.not_replaceable
    ):  # no one feature map (a layer that outputs a list)
        return geo.rules.not_replaceable[module].format(op=one)
    unsure = unsure_reason("output", shape.c2, shape.c2_assumed)
    if unsure or shape.c2 is None:
        return unsure
    argument = argument_for_channels(shape.c2, geo)
    if argument is None:
        clamp = f" and max_channels {geo.max_channels:g}" if geo.max_channels < float("inf") else ""
        return f"no {op.name} argument gives exactly {shape.c2} channels at width {geo.width:g}{clamp}"
    if following and following.module == op.name and following.source == -1:
        wanted = op.yaml_args(argument, 1, values)
        if list(following.args) == wanted:
            return f"already followed by {one}"
        return existing(op.name, list(following.args), wanted, f"followed by layer {following.index}, ")
    if options.rewire == "next" and (following is None or layer.index not in reads(following)):
        reader = (
            f"layer {following.index} ({following.module}) does not read it"
            if following
            else "it is the last"
        )
        return (
            f"with --rewire next the new {op.name} would feed only the next layer, and {reader}: it would feed "
            "nothing. Use --rewire all"
        )
    return op.channel_problem(shape.c2, values)


def reads(layer: Layer) -> set[int]:
    """The absolute indices a layer takes input from."""
    sources = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    return {layer.index + f if f < 0 else f for f in sources}


def unsure_reason(which: str, channels: int | None, assumption: Assumption | None) -> str | None:
    """Why a channel count cannot be used: it is unknown, or it rests on a module yolopatch does not know."""
    if channels is None:
        return f"its {which} channels are unknown"
    if assumption is None:
        return None
    return (
        f"its {which} channels ({channels}) are an assumption: they rest on {assumption}, a module yolopatch "
        f"does not know; {assumption.remedy()}"
    )


def existing(name: str, have: list[Any], wanted: list[Any], where: str = "") -> str:
    return (
        f"it is {where}already {article(name)} {name} with args {have}, not the {wanted} asked for; yolopatch does "
        f"not rewrite an existing {name} row: edit its args by hand"
    )


def change_of(shape: Shape, stride: int) -> str:
    parts = [f"changes {shape.c1} to {shape.c2} channels"] if shape.c1 != shape.c2 else []
    parts += [f"divides the size by {stride}"] if stride != 1 else []
    return "this layer " + " and ".join(parts)


def row_stride(layer: Layer, rules: Rules) -> int | Fraction:
    """The row's stride as a yaml writes it: a whole number, or the fraction of an upsampling row (1 when
    unknown)."""
    step = layer_stride(layer.module, layer.args, rules) or Fraction(1)
    return int(step) if step.denominator == 1 else step


def whole_stride(layer: Layer, rules: Rules) -> int | None:
    step = layer_stride(layer.module, layer.args, rules)
    return int(step) if step is not None and step.denominator == 1 else None


def into_decision(
    layer: Layer,
    into: str,
    op: Operator,
    blocks: Mapping[str, CspBlock],
    names: Sequence[str],
    geos: Mapping[str, Geometry],
    sims: Mapping[str, Any],
) -> tuple[str | None, str]:
    """Why the row cannot take the operator (None: it can), and the variant's name."""
    module = normalize_module(layer.module)
    parts = split_variant(module, blocks, names)
    csp = parts[0] if parts else module
    if csp not in blocks:
        return f"it is not a CSP row ({', '.join(blocks)})", ""
    if into not in ("csp", csp):
        return (
            f"it is a {csp} row: --into {into} would read its arguments {list(layer.args)} as {into}'s; use "
            f"--into {csp}"
        ), ""
    variant = variant_name(csp, op.name)
    if parts and parts[1] == op.name:
        return f"already {variant}", variant
    if parts:
        return f"it already holds {parts[1]} ({module}); put one operator into a CSP block", ""
    for scale in geos:
        c2 = sims[scale].shapes[layer.index].c2
        if c2 is None:
            return "its output channels are unknown", ""
        c_in, c_out = slot_channels(blocks[csp], layer.args, c2, scale)
        channels = c_out if op.keeps_channels else c_in
        problem = op.channel_problem(channels, op.defaults)
        if problem:
            at = f"at scale {scale} " if scale else ""
            return f"{at}the slot in its bottlenecks has {channels} channels: {problem}", ""
    return None, variant
