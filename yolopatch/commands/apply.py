"""`apply`: turn chosen layers into an operator, or insert one after them, as text splices.

Text in, text out: parse to find the spans, splice only those, parse the result again and check that it
means exactly the intended model. Every byte outside the edited spans stays as it was.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from yolopatch.channels import (
    Assumption,
    ChannelHints,
    Geometry,
    Shape,
    argument_for_channels,
    common_argument,
    geometries,
    layer_stride,
    normalize_module,
    simulate,
    with_variants,
)
from yolopatch.csp import CspBlock, slot_channels, slot_of, split_variant, variant_name
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.modelyaml import From, Layer, ModelYaml, Span, line_col, parse_model_yaml
from yolopatch.operators.registry import DEFAULT, OPERATORS
from yolopatch.operators.spec import Operator, resolve_values
from yolopatch.rules import Rules
from yolopatch.selection import select_layers
from yolopatch.splice import Edit, splice
from yolopatch.targets.base import Target
from yolopatch.targets.registry import enclosing, target_for

_INDEX_COMMENT = re.compile(r"#[ \t]*(\d+)(?!\d)")

Row = tuple[From, int, str, tuple[Any, ...]]


@dataclass(frozen=True)
class ApplyOptions:
    """What to write: which operator with which option values (by name; the rest keep their defaults),
    replacing the selected layers or inserting after them."""

    op: Operator = DEFAULT
    values: Mapping[str, Any] = field(default_factory=dict)
    insert: bool = False
    rewire: Literal["all", "next"] = "all"
    hints: ChannelHints = field(default_factory=ChannelHints)  # --channels: what the user states
    scale: str | None = None  # --scale: write for this scale of a `scales:` file only
    users: tuple[Operator, ...] = ()  # the user's own operators (yolopatch.toml), known like the built-ins

    @property
    def resolved(self) -> dict[str, Any]:
        return resolve_values(self.op, self.values)

    @property
    def registered(self) -> tuple[Operator, ...]:
        """The user's operators the simulation must know: those recorded, and the one being written."""
        return (*self.users, *([self.op] if self.op.user is not None and self.op not in self.users else []))


@dataclass(frozen=True)
class Change:
    """One layer of the result that yolopatch wrote: `index` numbers the result's layers."""

    index: int
    action: Literal["replaced", "inserted"]
    old: str
    row: str


@dataclass(frozen=True)
class ApplyResult:
    original: str
    text: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...]
    target: Target  # whose parse_model the file is for
    written: str  # the class the edit wrote (the operator, or the first `--into` class)
    selected: tuple[int, ...] = ()  # the input's layers that were edited (replaced, or inserted after)

    @property
    def changed(self) -> bool:
        return self.text != self.original


@dataclass(frozen=True)
class Variant:
    """One file of `apply --each`: the operator at one position of the input."""

    layer: int  # the input's layer it replaces or follows
    result: ApplyResult


def apply_each(
    text: str, layers: str, options: ApplyOptions, name: str = "<yaml>"
) -> tuple[ApplyResult, tuple[Variant, ...]]:
    """One variant per layer the selection edits, for ablations, with the edit of them all in one file:
    the same checks, refusals and notes, so a variant exists exactly where the combined edit changes a
    layer."""
    combined = apply_operator(text, layers, options, name)
    variants = tuple(Variant(i, apply_operator(text, str(i), options, name)) for i in combined.selected)
    return combined, variants


def apply_operator(text: str, layers: str, options: ApplyOptions, name: str = "<yaml>") -> ApplyResult:
    """Rewrite the selected layers of a model yaml's text; raise YolopatchError when it cannot be done."""
    values = options.resolved
    if options.rewire not in ("all", "next"):
        raise YolopatchError(f"--rewire {options.rewire}: use 'all' or 'next'.")
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    geos = geometries(model.values, target.rules, options.scale, options.registered)
    logical = model.logical_rows()
    sims = {scale: simulate(logical, geo, name, options.hints) for scale, geo in geos.items()}
    first = next(iter(geos.values()))
    patched = any(normalize_module(layer.module) == options.op.name for layer in model.layers)
    selection = select_layers(layers, model.layers, absent_ok=first.rules.known if patched else ())
    already = [f"--layers {term} matches no layer any more: already patched." for term in selection.unmatched]
    skipped: list[str] = []
    targets: dict[int, int | None] = {}  # index -> the inserted operator's first argument
    context = _Context(model, first, options, values)
    for index in selection.indices:
        layer = model.layers[index]
        reason, argument = _decide(context, geos, layer, {scale: sims[scale].shapes[index] for scale in sims})
        if reason is None:
            targets[index] = argument
        elif reason.startswith("already"):
            already.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        elif index not in selection.explicit:
            skipped.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        else:
            raise YolopatchError(f"{_where(model, layer)}: cannot {_verb(options)}: {reason}.")
    if not targets and not already:
        raise YolopatchError(f"{name}: --layers {layers} leaves nothing to change. " + " ".join(skipped))
    notes = [*sims[first.scale].warnings, *already, *skipped]
    if options.insert:
        rows, edits, changes = _plan_insert(model, targets, options, values)
    else:
        rows, edits, changes = _plan_replace(model, targets, options.op, values, first.rules)
    new_text = splice(text, edits)
    notes += _non_ascii_warning(_verify(new_text, rows, geos, name), first.rules)
    return _result(text, new_text, changes, notes, target, options.op.name, sorted(targets))


def _verb(options: ApplyOptions) -> str:
    name = options.op.name
    return (
        f"insert {_article(name)} {name} after it"
        if options.insert
        else f"replace it with {_article(name)} {name}"
    )


def _article(name: str) -> str:
    """'an Involution', 'an SE', 'an ECA', 'a CBAM': by how the name is spoken."""
    return "an" if name[0] in "AEIOU" or name[:2] in ("SE", "SK") else "a"


def _where(model: ModelYaml, layer: Layer) -> str:
    return f"{model.name}:{line_col(model.text, layer.row.start)}: layer {layer.index} ({layer.module})"


@dataclass(frozen=True)
class _Context:
    """What every per-layer decision reads: the model, its geometry, the options and resolved values."""

    model: ModelYaml
    geo: Geometry
    options: ApplyOptions
    values: Mapping[str, Any]

    @property
    def one(self) -> str:
        """'an Involution', 'a CBAM'."""
        return f"{_article(self.options.op.name)} {self.options.op.name}"


def _decide(
    context: _Context, geos: Mapping[str, Geometry], layer: Layer, shapes: Mapping[str, Shape]
) -> tuple[str | None, int | None]:
    """Why the layer cannot be changed at some scale (None: it can), and the inserted operator's argument,
    one value that reproduces the layer's channels at every scale."""
    reasons = {
        scale: _why_not(replace(context, geo=geos[scale]), layer, shape) for scale, shape in shapes.items()
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
    resampled = _replaces_upsample(context.options, layer)
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


def _why_not(context: _Context, layer: Layer, shape: Shape) -> str | None:
    """Why the selected layer cannot be changed as asked (None: it can; "already ...": nothing to do)."""
    if context.options.insert:
        return _why_not_insert(context, layer, shape)
    op, module, one, values = context.options.op, normalize_module(layer.module), context.one, context.values
    rules = context.geo.rules
    if module == op.name:
        wanted = op.yaml_args(layer.args[0], _row_stride(layer, rules), values) if layer.args else []
        return (
            f"already {one}" if list(layer.args) == wanted else _existing(op.name, list(layer.args), wanted)
        )
    if not isinstance(layer.source, int):
        return f"it takes several inputs ({list(layer.source)}); {one} takes one"
    if _replaces_upsample(context.options, layer):
        return _why_not_resample(context, layer, shape)
    if op.upsamples:
        return f"{op.name} upsamples: it replaces an nn.Upsample row, not a layer of stride {_stride(layer, rules)}"
    if module in rules.not_replaceable:
        return rules.not_replaceable[module].format(op=one)
    if module not in rules.channel_modules:
        return f"yolopatch does not know {module}'s output channels"
    if not layer.args or not isinstance(layer.args[0], int):
        return f"its first argument {layer.args[:1]} is not an output channel count"
    stride = _stride(layer, rules)
    if stride is None:
        return f"its stride {list(layer.args[2:3])} is not a positive whole number"
    unsure = _unsure("input", shape.c1, shape.c1_assumed)
    if unsure or shape.c1 is None:
        return unsure
    if op.keeps_channels and op.own_stride == 1 and (shape.c1 != shape.c2 or stride != 1):
        return f"{op.name} keeps channels and size; {_change_of(shape, stride)}: use --insert"
    if op.own_stride is not None and stride != op.own_stride:
        return f"{op.name} has stride {op.own_stride} and this layer {stride}: it replaces layers of stride {op.own_stride}"
    if op.keeps_channels and shape.c1 != shape.c2:
        return f"{op.name} keeps channels; {_change_of(shape, 1)}"
    problem = op.channel_problem(shape.c1, values)
    if problem is None and op.user is not None and shape.c2 is not None:
        return op.channel_problem(shape.c2, values)  # a user's learned constraint holds for its output too
    return problem


def _replaces_upsample(options: ApplyOptions, layer: Layer) -> bool:
    return not options.insert and options.op.upsamples and normalize_module(layer.module) == "nn.Upsample"


def _why_not_resample(context: _Context, layer: Layer, shape: Shape) -> str | None:
    """An upsampling operator in place of nn.Upsample: the factor must be one it can have."""
    op, step = context.options.op, layer_stride(layer.module, layer.args, context.geo.rules)
    if step is None or step >= 1 or (1 / step).denominator != 1:
        return f"its scale factor {list(layer.args[1:2])} is not a whole number"
    if op.own_stride is not None and step != op.own_stride:
        return f"{op.name} upsamples by {1 / op.own_stride} and this layer by {1 / step}"
    unsure = _unsure("input", shape.c1, shape.c1_assumed)
    if unsure or shape.c1 is None:
        return unsure
    return op.channel_problem(shape.c1, context.values)


def _why_not_insert(context: _Context, layer: Layer, shape: Shape) -> str | None:
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
    if (
        shape.c2 is None and module in geo.rules.not_replaceable
    ):  # no one feature map (a layer that outputs a list)
        return geo.rules.not_replaceable[module].format(op=one)
    unsure = _unsure("output", shape.c2, shape.c2_assumed)
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
        return _existing(op.name, list(following.args), wanted, f"followed by layer {following.index}, ")
    if options.rewire == "next" and (following is None or layer.index not in _reads(following)):
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


def _reads(layer: Layer) -> set[int]:
    """The absolute indices a layer takes input from."""
    sources = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    return {layer.index + f if f < 0 else f for f in sources}


def _unsure(which: str, channels: int | None, assumption: Assumption | None) -> str | None:
    """Why a channel count cannot be used: it is unknown, or it rests on a module yolopatch does not know."""
    if channels is None:
        return f"its {which} channels are unknown"
    if assumption is None:
        return None
    return (
        f"its {which} channels ({channels}) are an assumption: they rest on {assumption}, a module yolopatch "
        f"does not know; {assumption.remedy()}"
    )


def _existing(name: str, have: list[Any], wanted: list[Any], where: str = "") -> str:
    return (
        f"it is {where}already {_article(name)} {name} with args {have}, not the {wanted} asked for; yolopatch does "
        f"not rewrite an existing {name} row: edit its args by hand"
    )


def _change_of(shape: Shape, stride: int) -> str:
    parts = [f"changes {shape.c1} to {shape.c2} channels"] if shape.c1 != shape.c2 else []
    parts += [f"divides the size by {stride}"] if stride != 1 else []
    return "this layer " + " and ".join(parts)


def _row_stride(layer: Layer, rules: Rules) -> int | Fraction:
    """The row's stride as a yaml writes it: a whole number, or the fraction of an upsampling row (1 when
    unknown)."""
    step = layer_stride(layer.module, layer.args, rules) or Fraction(1)
    return int(step) if step.denominator == 1 else step


def _stride(layer: Layer, rules: Rules) -> int | None:
    step = layer_stride(layer.module, layer.args, rules)
    return int(step) if step is not None and step.denominator == 1 else None


def _plan_replace(
    model: ModelYaml,
    targets: Mapping[int, int | None],
    op: Operator,
    values: Mapping[str, Any],
    rules: Rules,
) -> tuple[list[Row], list[Edit], list[Change]]:
    """Each target row becomes the operator: its channels from the row's first argument (or `targets`' for
    a row whose first argument is not a channel count, nn.Upsample), its stride the row's; a block that
    repeats keeps the row's number."""
    rows = model.logical_rows()
    edits, changes = [], []
    for index, argument in targets.items():
        layer = model.layers[index]
        args = op.yaml_args(
            layer.args[0] if argument is None else argument, _row_stride(layer, rules), values
        )
        number = layer.number if op.repeats else 1
        rows[index] = (layer.source, number, op.name, tuple(args))
        args_text = _flow(args, model.text[layer.args_span.start : layer.args_span.end])
        row_edits = [
            *([] if op.repeats else [Edit(layer.number_span.start, layer.number_span.end, "1")]),
            Edit(layer.module_span.start, layer.module_span.end, op.name),
            Edit(layer.args_span.start, layer.args_span.end, args_text),
        ]
        edits += row_edits
        row_text = _splice_span(model.text, layer.row, row_edits)
        changes.append(Change(index=index, action="replaced", old=layer.module, row=row_text))
    return rows, edits, changes


def _plan_insert(
    model: ModelYaml, targets: Mapping[int, int | None], options: ApplyOptions, values: Mapping[str, Any]
) -> tuple[list[Row], list[Edit], list[Change]]:
    chosen = set(targets)
    new_index = _new_indices(len(model.layers), chosen)
    rows: list[Row] = []
    edits: list[Edit] = []
    changes: list[Change] = []
    for layer in model.layers:
        source = _rewire_source(layer, chosen, new_index, options.rewire)
        rows.append((source, layer.number, layer.module, layer.args))
        edits += _source_edits(layer, source)
        edits += _comment_edits(model.text, layer, new_index[layer.index])
        if layer.index in chosen:
            args = options.op.yaml_args(targets[layer.index], 1, values)  # type: ignore[arg-type]
            rows.append((-1, 1, options.op.name, tuple(args)))
            row_edits, row_text = _insert_row(model, layer, options.op.name, args, new_index[layer.index] + 1)
            edits += row_edits
            changes.append(
                Change(
                    index=new_index[layer.index] + 1,
                    action="inserted",
                    old=f"after {layer.module}",
                    row=row_text,
                )
            )
    return rows, edits, changes


def _new_indices(count: int, chosen: set[int]) -> list[int]:
    """Where each original layer lands once an operator follows every chosen one."""
    indices, shift = [], 0
    for index in range(count):
        indices.append(index + shift)
        shift += index in chosen
    return indices


def _rewire_source(layer: Layer, chosen: set[int], new_index: list[int], rewire: str) -> From:
    def target(old: int) -> int:
        takes_new = old in chosen and (rewire == "all" or layer.index == old + 1)
        return new_index[old] + 1 if takes_new else new_index[old]

    def moved(f: int) -> int:
        if f == -1:
            return -1  # the previous row: the new operator when one was inserted right before, as intended
        if f < 0:
            return target(layer.index + f) - new_index[layer.index]
        return target(f)

    if isinstance(layer.source, int):
        return moved(layer.source)
    return tuple(moved(f) for f in layer.source)


def _source_edits(layer: Layer, source: From) -> list[Edit]:
    old = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    new = [source] if isinstance(source, int) else list(source)
    return [
        Edit(span.start, span.end, str(b))
        for span, a, b in zip(layer.from_spans, old, new, strict=True)
        if a != b
    ]


def _comment_edits(text: str, layer: Layer, new_index: int) -> list[Edit]:
    if layer.comment is None or new_index == layer.index:
        return []
    match = _INDEX_COMMENT.match(text, layer.comment.start, layer.comment.end)
    if not match or int(match.group(1)) != layer.index:
        return []
    return [Edit(match.start(1), match.end(1), str(new_index))]


def _insert_row(
    model: ModelYaml, layer: Layer, name: str, args: list[Any], index: int
) -> tuple[list[Edit], str]:
    text = model.text
    row_text = _flow([-1, 1, name, args], text[layer.row.start : layer.row.end])
    section = next(s for s in model.sections if s.name == layer.section)
    if not layer.ends_line or _closes_on_line(text, layer):
        if section.block_style:
            raise YolopatchError(
                f"{_where(model, layer)}: cannot insert after a row that does not end its line."
            )
        return [Edit(layer.row.end, layer.row.end, f", {row_text}")], row_text
    prefix = text[layer.line_start : layer.row.start]
    indent = prefix if section.block_style else re.sub(r"\S", " ", prefix)
    comma = "," if layer.has_comma and not section.block_style else ""
    comment = _new_comment(model, layer, index)
    line = f"{model.newline}{indent}{row_text}{comma}{comment}"
    edits = [Edit(layer.line_end, layer.line_end, line)]
    if not layer.has_comma and not section.block_style:
        # the last row had no trailing comma; now that a row follows it needs one
        edits.insert(0, Edit(layer.row.end, layer.row.end, ","))
    return edits, row_text


def _closes_on_line(text: str, layer: Layer) -> bool:
    return "]" in text[layer.row.end : layer.comment.start if layer.comment else layer.line_end]


def _new_comment(model: ModelYaml, layer: Layer, index: int) -> str:
    """`# N` after the new row when its neighbours carry index comments, spaced like them."""
    section = next(s for s in model.sections if s.name == layer.section)
    position = section.layers.index(layer)
    neighbours = [layer] + list(section.layers[position + 1 : position + 2])
    if not any(
        n.comment and _INDEX_COMMENT.match(model.text, n.comment.start, n.comment.end) for n in neighbours
    ):
        return ""
    spaced = next((n for n in neighbours if n.comment), layer)
    before = model.text[spaced.row.end : spaced.comment.start].replace(",", "") if spaced.comment else ""
    return f"{before or '  '}# {index}"


def _flow(values: list[Any], style_of: str) -> str:
    """A flow list written the way `style_of` writes its lists: `[a, b]`, `[a,b]` or `[ a, b ]`."""
    spaced = style_of.startswith("[ ")
    separator = ", " if ", " in style_of or "," not in style_of else ","

    def write(value: Any) -> str:
        if isinstance(value, list):
            inner = separator.join(write(v) for v in value)
            return f"[ {inner} ]" if spaced else f"[{inner}]"
        return str(value)

    return write(values)


def _splice_span(text: str, span: Span, edits: Sequence[Edit]) -> str:
    """The text of one span after the edits inside it."""
    shifted = [Edit(e.start - span.start, e.end - span.start, e.text) for e in edits]
    return splice(text[span.start : span.end], shifted)


def _verify(new_text: str, rows: list[Row], geos: Mapping[str, Geometry], name: str) -> ModelYaml:
    """Parse the result again: it must mean exactly the planned rows."""
    reparsed = parse_model_yaml(new_text, name)
    if reparsed.logical_rows() != rows:
        raise YolopatchError(
            f"{name}: internal error: the edited text did not parse back as planned; nothing was written. "
            "Please report this with the yaml file."
        )
    for geo in geos.values():
        simulate(rows, geo, name)
    return reparsed


def _non_ascii_warning(model: ModelYaml, rules: Rules) -> list[str]:
    """Non-ASCII text inside rows, for the families that do not read yamls as UTF-8 (Rules.non_ascii)."""
    text = model.text
    rows = [layer.index for layer in model.layers if not text[layer.row.start : layer.row.end].isascii()]
    if not rows or not rules.non_ascii:
        return []
    return [f"layers {rows} hold non-ASCII text inside their rows; {rules.non_ascii}."]


# --- --into: the operator inside a CSP block's bottlenecks ----------------------------------------------------


def apply_into(text: str, layers: str, options: ApplyOptions, into: str, name: str = "<yaml>") -> ApplyResult:
    """Rename the selected CSP rows (C3, C2f, C3k2) to `<CSP>_<NAME>`, keeping `from`, n and args, after
    checking that the operator fits the slot and gets channels it takes at every scale. `into` is the CSP
    block to use ("csp": the one each row already uses)."""
    op = options.op
    if any(options.op.defaults.get(k) != v for k, v in options.resolved.items()):
        raise YolopatchError(
            f"--into builds {op.name} with its defaults inside each bottleneck; options ({', '.join(options.values)}) "
            "are not supported with --into yet."
        )
    slot, why = slot_of(op)
    if slot is None:
        raise YolopatchError(f"--into: {why}; it cannot go inside a bottleneck.")
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    geos = geometries(model.values, target.rules, options.scale, options.registered)
    first = next(iter(geos.values()))
    blocks = first.rules.csp
    if into != "csp" and into not in blocks:
        raise OptionError(
            "--into",
            f"--into {into}: {first.rules.family}'s CSP blocks are {', '.join(blocks)}."
            if blocks
            else f"--into {into}: {first.rules.family} has no CSP block yolopatch fills (C3, C2f, C3k2); "
            "put the operator after the block with --insert instead.",
        )
    logical = model.logical_rows()
    sims = {scale: simulate(logical, geo, name, options.hints) for scale, geo in geos.items()}
    names = [o.name for o in (*OPERATORS.values(), *options.registered)]
    selection = select_layers(layers, model.layers)
    edits: list[Edit] = []
    changes: list[Change] = []
    rows = list(logical)
    notes: list[str] = []
    classes: list[str] = []
    for index in selection.indices:
        layer = model.layers[index]
        reason, variant = _into_decision(layer, into, op, blocks, names, geos, sims)
        if reason is None:
            rows[index] = (layer.source, layer.number, variant, tuple(layer.args))
            edits.append(Edit(layer.module_span.start, layer.module_span.end, variant))
            changes.append(Change(index, "replaced", layer.module, f"{variant} ({slot} slot)"))
            classes.append(variant)
        elif reason.startswith("already") or index not in selection.explicit:
            notes.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        else:
            raise YolopatchError(f"{_where(model, layer)}: cannot put {op.name} into it: {reason}.")
    if not changes and not any("already" in n for n in notes):
        raise YolopatchError(
            f"{name}: --layers {layers} selects no CSP row to put {op.name} into. " + " ".join(notes)
        )
    new_text = splice(text, edits)
    variants = {variant_name(csp, op.name) for csp in blocks}
    check = {
        s: replace(g, rules=with_variants(g.rules, variants, options.registered)) for s, g in geos.items()
    }
    _verify(new_text, rows, check, name)
    written = classes[0] if classes else op.name
    return _result(text, new_text, changes, notes, target, written, [c.index for c in changes])


def _result(
    text: str,
    new_text: str,
    changes: Sequence[Change],
    notes: Sequence[str],
    target: Target,
    written: str,
    selected: Sequence[int],
) -> ApplyResult:
    return ApplyResult(
        original=text,
        text=new_text,
        changes=tuple(changes),
        notes=tuple(notes),
        target=target,
        written=written,
        selected=tuple(selected),
    )


def _into_decision(
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


@dataclass(frozen=True)
class Written:
    """What `apply` will do with a result: the file, the change (None: nothing to write), and why not."""

    path: Path
    change: FileChange | None
    skipped: str = ""  # why nothing is written ("" when something is)
    checkout: Path | None = None  # the checkout the file sits in, of any target


def apply_file(
    model: Path,
    layers: str,
    options: ApplyOptions,
    into: str | None,
    output: Path | None,
    in_place: bool,
    force: bool,
    dry: bool,
) -> tuple[ApplyResult, Written]:
    """`apply` on one file: the edit, and where it goes (STEM-CLASS.yaml beside the input by default)."""
    text = read_text(model)
    if into is not None:
        result = apply_into(text, layers, options, into, name=str(model))
    else:
        result = apply_operator(text, layers, options, name=str(model))
    suffix = model.suffix or ".yaml"
    path = model if in_place else output or model.with_name(f"{model.stem}-{result.written.lower()}{suffix}")
    if path != model and path.exists() and not force and not dry:
        if read_text(path) == result.text:
            return result, Written(path, None, f"{path}: already up to date; nothing written.")
        raise YolopatchError(
            f"{path}: already exists. Pass --force to overwrite it, or -o to write elsewhere."
        )
    if not result.changed:
        return result, Written(path, None, f"{model}: already patched; nothing to change")
    change = FileChange(path, result.original, result.text, model)  # diffs compare with the input
    return result, Written(path, change, checkout=enclosing(path))


def apply_files(
    model: Path, layers: str, options: ApplyOptions, force: bool, dry: bool
) -> tuple[ApplyResult, tuple[Variant, ...], list[Path], list[FileChange]]:
    """`apply --each`: one variant file per edited layer (STEM-OP-LN.yaml), all written or none."""
    combined, variants = apply_each(read_text(model), layers, options, name=str(model))
    stem, suffix = model.stem, model.suffix or ".yaml"
    paths = [model.with_name(f"{stem}-{options.op.name.lower()}-L{v.layer}{suffix}") for v in variants]
    changes = [
        FileChange(path, v.result.original, v.result.text, model)
        for path, v in zip(paths, variants, strict=True)
        if not (path.exists() and read_text(path) == v.result.text)
    ]
    clashes = [str(c.path) for c in changes if c.path.exists()]
    if clashes and not force and not dry:
        raise YolopatchError(
            f"{', '.join(clashes)}: already exist(s) with other contents. Pass --force to overwrite them."
        )
    return combined, variants, paths, changes
