"""parse_model's channel and stride bookkeeping, simulated on yaml rows without building anything, at every
scale a file defines. The module tables come from the yaml's target (yolopatch.targets)."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal

from yolopatch.csp import variants_in
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.modelyaml import From, ModelYaml, line_col
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.rules import Rules


def with_operators(rules: Rules, operators: Iterable[Operator]) -> Rules:
    """Operators register in parse_model's (c1, c2) collection like Conv does; their strides are the third
    argument (`strided`), fixed, or read by their own rule (users' modules)."""
    operators = list(operators)
    fusion = {op.name: op.fusion for op in operators if op.fusion is not None}
    backbones = {op.name: op.backbone.strides for op in operators if op.backbone not in (None, "index")}
    # registered by the fusion or backbone branch instead
    operators = [op for op in operators if op.fusion is None and op.backbone is None]
    strided = frozenset(op.name for op in operators if op.strided)
    stride_rules = {op.name: op.stride_rule for op in operators if op.stride_rule is not None}
    return replace(
        rules,
        channel_modules=rules.channel_modules | {op.name for op in operators},
        strided=rules.strided | strided,
        stride_rules={**rules.stride_rules, **stride_rules},
        fusion={**rules.fusion, **fusion},
        backbones={**rules.backbones, **backbones},
        special={**rules.special, **({"Index": _first_argument} if backbones else {})},
    )


def _first_argument(args: Sequence[Any], _c_in: Sequence[int | None], _previous: int | None) -> int | None:
    """A backbone row's and Index's channels: their first argument, unscaled (the backbone's own widths)."""
    return args[0] if args and _is_int(args[0]) else None


@dataclass(frozen=True)
class Geometry:
    """Model-wide numbers parse_model reads from the yaml, at one scale ("" when the file has none)."""

    rules: Rules
    scale: str
    width: float
    depth: float
    max_channels: float
    divisor: int
    exempt: int  # the c2 parse_model leaves unscaled: outputs per anchor level, or nc (Rules.exempt)
    input_channels: int


@dataclass(frozen=True)
class Assumption:
    """A layer whose module yolopatch does not know: numbers after it rest on parse_model's fallback rule
    (the output keeps the input's channels)."""

    index: int
    module: str

    def __str__(self) -> str:
        return f"layer {self.index} ({self.module})"

    def remedy(self) -> str:
        return (
            f"state its channels with --channels {self.module}=arg (set by its first argument, scaled like "
            f"Conv's), --channels {self.module}=same (keeps its input's) or --channels {self.index}=N"
        )


@dataclass(frozen=True)
class ChannelHints:
    """What the user states about modules yolopatch does not know (--channels): a module's output channels
    come from its first argument ("arg") or equal its input's ("same"); or a layer's count outright."""

    modules: Mapping[str, Literal["arg", "same"]] = field(default_factory=dict)
    layers: Mapping[int, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Shape:
    """A layer's channels in and out and its cumulative stride as parse_model gives them (None: unknown).

    A number that rests on a module yolopatch does not know names it in the matching `*_assumed` field.
    """

    c1: int | None
    c2: int | None
    stride: Fraction | None
    c1_assumed: Assumption | None = None
    c2_assumed: Assumption | None = None
    stride_assumed: Assumption | None = None


@dataclass(frozen=True)
class Simulation:
    shapes: tuple[Shape, ...]
    warnings: tuple[str, ...]
    geometry: Geometry


def normalize_module(name: str) -> str:
    return name[len("torch.") :] if name.startswith("torch.nn.") else name


def make_divisible(x: float, divisor: int) -> int:
    return math.ceil(x / divisor) * divisor


def modules_of(values: Mapping[str, Any]) -> list[str]:
    """The module names of a parsed yaml's rows, `torch.nn.X` written `nn.X`."""
    rows = [*(values.get("backbone") or []), *(values.get("head") or [])]
    return [normalize_module(str(row[2])) for row in rows if isinstance(row, (list, tuple)) and len(row) > 2]


def rules_for(rules: Rules, values: Mapping[str, Any], operators: Sequence[Operator] = ()) -> Rules:
    """The tables of the yaml's target (`rules`), with the built-in operators registered as `inject`
    registers them; `operators`: the user's own, registered like the built-ins."""
    rules = with_operators(rules, [*OPERATORS.values(), *operators])
    return with_variants(rules, modules_of(values), operators)


def with_variants(rules: Rules, modules: Iterable[str], operators: Sequence[Operator] = ()) -> Rules:
    """`--into` classes (C2f_CBAM) among `modules` are their CSP block to parse_model: (c1, c2), size kept."""
    names = [op.name for op in [*OPERATORS.values(), *operators]]
    found = variants_in(modules, rules.csp, names)
    return replace(rules, channel_modules=rules.channel_modules | set(found)) if found else rules


def geometries(
    values: Mapping[str, Any], rules: Rules, scale: str | None = None, operators: Sequence[Operator] = ()
) -> dict[str, Geometry]:
    """The file's geometry at each scale of its `scales:` (or at `scale` alone); one ("") without scales."""
    scales = values.get("scales")
    if not isinstance(scales, dict) or not scales:
        if scale:
            raise OptionError("--scale", f"--scale {scale}: this file defines no scales: (it has one size).")
        return {"": geometry(values, rules, "", operators)}
    if scale is not None and scale not in scales:
        raise OptionError(
            "--scale", f"--scale {scale}: this file defines scales {', '.join(map(str, scales))}."
        )
    return {
        str(name): geometry(values, rules, str(name), operators)
        for name in scales
        if scale is None or str(name) == scale
    }


def geometry(
    values: Mapping[str, Any], rules: Rules, scale: str = "", operators: Sequence[Operator] = ()
) -> Geometry:
    """The yaml's numbers at `scale`, with its target's tables (`rules`) and the operators registered."""
    rules = rules_for(rules, values, operators)
    nc = values.get("nc", 80)
    if rules.exempt == "no":  # outputs per anchor level, na * (nc + 5)
        anchors = values.get("anchors", 3)
        per_level = len(anchors[0]) // 2 if isinstance(anchors, list) and anchors else anchors
        exempt = per_level * (nc + 5) if isinstance(per_level, int) and isinstance(nc, int) else -1
    else:
        exempt = nc if isinstance(nc, int) else -1
    depth, width, max_channels = (
        values.get("depth_multiple", 1.0),
        values.get("width_multiple", 1.0),
        math.inf,
    )
    if scale:
        depth, width, max_channels = values["scales"][scale]
    return Geometry(
        rules=rules,
        scale=scale,
        width=float(width),
        depth=float(depth),
        max_channels=float(max_channels),
        divisor=int(values.get("channel_multiple") or 8),
        exempt=exempt,
        input_channels=int(values.get("ch", 3)),
    )


def fusion_channels(c2: int, geo: Geometry) -> int:
    """The fusion branch's scaling of an output-channel argument: as Conv's, with no exemption."""
    return make_divisible(min(c2, geo.max_channels) * geo.width, geo.divisor)


def scaled_channels(c2: int, geo: Geometry) -> int:
    """parse_model's output channels for a (c1, c2) module whose first argument is c2."""
    return c2 if c2 == geo.exempt else make_divisible(min(c2, geo.max_channels) * geo.width, geo.divisor)


def _largest_argument(channels: int, geo: Geometry) -> int:
    """Above this, no first argument can give `channels` without the clamp making it the same as a smaller one."""
    return math.ceil(channels / geo.width) + 2 * geo.divisor


def arguments_for_channels(channels: int, geo: Geometry, top: int) -> set[int]:
    """Every first argument up to `top` that parse_model turns into exactly `channels`."""
    return {c for c in range(1, top + 1) if scaled_channels(c, geo) == channels}


def argument_for_channels(channels: int, geo: Geometry) -> int | None:
    """The yaml argument that parse_model scales to exactly `channels`, closest to channels / width."""
    return common_argument({geo.scale: channels}, {geo.scale: geo})


def common_argument(channels: Mapping[str, int], geos: Mapping[str, Geometry]) -> int | None:
    """One first argument that gives each scale its channels (closest to the widest scale's ratio)."""
    top = max((_largest_argument(channels[name], geos[name]) for name in channels), default=0)
    sets = [arguments_for_channels(channels[name], geos[name], top) for name in channels]
    common = set.intersection(*sets) if sets else set()
    if not common:
        return None
    widest = max(channels, key=lambda name: geos[name].width)
    guess = channels[widest] / geos[widest].width
    if len(channels) == 1:
        return min(common, key=lambda c: (abs(c - guess), c))
    # across scales the clamp widens the choice (any of 1009-1024 may do): the roundest reads as intended
    return min(common, key=lambda c: (-(c & -c), abs(c - guess), c))


def layer_stride(module: str, args: Sequence[Any], rules: Rules) -> Fraction | None:
    """How much one layer divides the resolution (a Fraction below 1 upsamples); None when unknown."""
    module = normalize_module(module)
    if module in rules.stride_rules:
        return rules.stride_rules[module](args)
    if module in rules.strided:
        return _int_arg(args, 2, 1)
    if module in rules.upsampling:
        step = _int_arg(args, 2, 1)
        return None if step is None else 1 / step
    if module == "nn.Upsample":
        scale = args[1] if len(args) > 1 else None
        return Fraction(1) / Fraction(scale) if isinstance(scale, (int, float)) and scale > 0 else None
    if module == "nn.MaxPool2d":
        return _int_arg(args, 1, _int_arg(args, 0, 1))
    return Fraction(1)


def simulate(
    rows: Sequence[tuple[From, int, str, Sequence[Any]]],
    geo: Geometry,
    name: str = "<yaml>",
    hints: ChannelHints = ChannelHints(),
) -> Simulation:
    """Walk the rows as parse_model does; raise YolopatchError on a `from` that points nowhere."""
    shapes: list[Shape] = []
    warnings = []
    start = Shape(None, geo.input_channels, Fraction(1))
    rules = geo.rules
    for index, (source, _number, module, args) in enumerate(rows):
        module = normalize_module(module)
        inputs = [source] if isinstance(source, int) else list(source)
        for f in inputs:
            _check_source(index, f, name)
        before = [start if not shapes and f == -1 else shapes[f] for f in inputs]
        single = isinstance(source, int)
        unknown = module not in rules.known and module not in hints.modules and index not in hints.layers
        own = Assumption(index, module) if module not in rules.known else None
        previous = shapes[-1] if shapes else start
        c2, c2_assumed = _output_channels(index, module, args, before, previous, single, geo, hints)
        if unknown:
            c2_assumed = own
            warnings.append(
                f"layer {index}: {module} is not a module yolopatch knows; its channels are assumed to be its "
                f"input's ({rules.family}'s rule) and its stride 1. To be sure, {own.remedy() if own else ''}."
            )
        step = _list_stride(module, args, rules, inputs, index, rows) or layer_stride(module, args, rules)
        sized_by = before[-1] if module in rules.stride_from_last else before[0]
        if module in rules.fusion:
            sized_by = before[min(rules.fusion[module].sized_by(len(before)), len(before) - 1)]
        unsized = sized_by.stride is None or step is None or module in rules.heads
        stride = None if unsized else sized_by.stride * step  # type: ignore[operator]
        shapes.append(
            Shape(
                c1=before[0].c2 if single else None,
                c2=c2,
                stride=stride,
                c1_assumed=before[0].c2_assumed if single else None,
                c2_assumed=c2_assumed,
                stride_assumed=own or sized_by.stride_assumed,
            )
        )
    return Simulation(shapes=tuple(shapes), warnings=tuple(warnings), geometry=geo)


def _output_channels(
    index: int,
    module: str,
    args: Sequence[Any],
    before: list[Shape],
    previous: Shape,
    single: bool,
    geo: Geometry,
    hints: ChannelHints,
) -> tuple[int | None, Assumption | None]:
    """parse_model's output channels, and the unknown module they rest on (None: they are known)."""
    rules, first = geo.rules, before[0].c2
    inherited = next((s.c2_assumed for s in before if s.c2_assumed), None)
    rule = hints.modules.get(module)
    if index in hints.layers:
        return hints.layers[index], None
    if module in rules.channel_modules or rule == "arg":
        return (scaled_channels(args[0], geo) if args and _is_int(args[0]) else None), None
    if module in rules.fusion:
        return _fusion_output(rules.fusion[module], args, before, geo), inherited
    if module in rules.backbones:
        return _first_argument(args, [], None), None
    if module == "Concat":
        known = [s.c2 for s in before if s.c2 is not None]
        return (sum(known) if len(known) == len(before) else None), inherited
    if module in rules.heads:
        return None, None
    if module in rules.special:
        return rules.special[module](args, [s.c2 for s in before], previous.c2), inherited
    return (first if single else None), inherited


def _fusion_output(rule: Any, args: Sequence[Any], before: list[Shape], geo: Geometry) -> int | None:
    """A fusion row's output channels by its rule (None: an input's, or the argument, is unknown or short)."""
    widths = [s.c2 for s in before]
    first = args[0] if args else None
    if None in widths or (rule.out_param and not _is_int(first)):
        return None
    try:
        return int(rule.output_channels(widths, first, lambda c: fusion_channels(c, geo)))
    except IndexError:
        return None


def _list_stride(
    module: str, args: Sequence[Any], rules: Rules, inputs: list[int], index: int, rows: Sequence[Any]
) -> Fraction | None:
    """A backbone row's stride (its deepest output's), and an Index row's (its map's): None for any other."""
    if module in rules.backbones:
        return Fraction(max(rules.backbones[module]))
    source = index + inputs[0] if inputs[0] < 0 else inputs[0]
    backbone = normalize_module(str(rows[source][2])) if module == "Index" and 0 <= source < index else ""
    if backbone not in rules.backbones or not args or not _is_int(args[-1]):
        return None
    strides, deepest = rules.backbones[backbone], max(rules.backbones[backbone])
    k = args[-1]
    return Fraction(strides[k], deepest) if -len(strides) <= k < len(strides) else None


def _check_source(index: int, f: int, name: str) -> None:
    if not _reaches_back(index, f):
        raise YolopatchError(
            f"{name}: layer {index} takes input from {f}, which is not an earlier layer; fix its `from`."
        )


def _reaches_back(index: int, f: int) -> bool:
    """Whether `from` f of layer `index` names an earlier layer (or the image, for layer 0's -1)."""
    return f < index and (f >= 0 or index + f >= 0 or (index == 0 and f == -1))


def _int_arg(args: Sequence[Any], position: int, default: int | Fraction | None) -> Fraction | None:
    if len(args) <= position or args[position] is None:
        return None if default is None else Fraction(default)
    value = args[position]
    return Fraction(value) if _is_int(value) and value > 0 else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_channel_hints(terms: Sequence[str]) -> ChannelHints:
    """`--channels` terms: MODULE=arg, MODULE=same, or LAYER=N (a layer's output channels)."""
    modules: dict[str, Literal["arg", "same"]] = {}
    layers: dict[int, int] = {}
    for term in terms:
        key, _, value = (part.strip() for part in term.partition("="))
        if key.isdigit() and value.isdigit() and int(value) > 0:
            layers[int(key)] = int(value)
        elif key and not key.isdigit() and value in ("arg", "same"):
            modules[normalize_module(key)] = "arg" if value == "arg" else "same"
        else:
            raise OptionError(
                "--channels",
                f"--channels {term}: write MODULE=arg (its first argument sets its channels, scaled like "
                "Conv's), MODULE=same (it keeps its input's) or LAYER=N (layer LAYER outputs N channels).",
            )
    return ChannelHints(modules, layers)


def likely_typo(module: str, known: Iterable[str]) -> str | None:
    """The known module a name is most likely a misspelling of: the same name in other case, or one within
    difflib's 0.85 similarity (one letter off in a name of seven or more); None when it is not close to any."""
    names = sorted(known)
    same = next((k for k in names if k.lower() == module.lower()), None)
    close = difflib.get_close_matches(module, names, n=1, cutoff=0.85)
    return same or (close[0] if close else None)


def refuse_bad_rows(model: ModelYaml, rules: Rules, hints: ChannelHints = ChannelHints()) -> None:
    """Refuse, before anything is written and naming the line, a row whose `from` names no earlier layer, or
    whose module is not one the target knows but is close to one it does (`C2PSa` for C2PSA): taken for a
    fork's own block it would be built with a guessed rule, and the target's own code fails on it later. A
    module stated with --channels is the user's, not a typo."""
    for layer in model.layers:
        sources = [layer.source] if isinstance(layer.source, int) else list(layer.source)
        wrong = next((f for f in sources if not _reaches_back(layer.index, f)), None)
        if wrong is not None:
            raise YolopatchError(
                f"{model.name}:{line_col(model.text, layer.from_spans[0].start)}: layer {layer.index} takes input "
                f"from {wrong}, which is not an earlier layer; fix its `from`."
            )
        module = normalize_module(layer.module)
        if module in rules.known or module in hints.modules or layer.index in hints.layers:
            continue
        match = likely_typo(module, rules.known)
        if match is not None:
            raise YolopatchError(
                f"{model.name}:{line_col(model.text, layer.module_span.start)}: layer {layer.index}: {module} is not a module {rules.family} knows; did "
                f"you mean {match}? Correct the yaml; if {module} is your fork's own "
                f"block, state its channels with --channels {module}=arg (or =same)."
            )


def unknown_module(model: ModelYaml, rules: Rules, error: BaseException, place: str) -> str | None:
    """What a target's own build failure means when it failed to look a row's module up (a dict's
    KeyError, the checkout families' NameError from eval): the row, and either the inject it still needs
    (`place`: how `inject` names the target) or the module the name most likely misspells."""
    missing = error.args[0] if isinstance(error, KeyError) and error.args else getattr(error, "name", None)
    row = next((layer for layer in model.layers if normalize_module(layer.module) == missing), None)
    if row is None or not isinstance(error, (KeyError, NameError)):
        return None
    where = f"{model.name}:{line_col(model.text, row.module_span.start)}: layer {row.index}"
    if missing in rules.known:
        return (
            f"{where}: {missing} is not in this {rules.family} code yet; run `yolopatch inject {place} --for "
            f"{model.name}` first."
        )
    match = likely_typo(str(missing), rules.known)
    return f"{where}: {missing} is not a module {rules.family} knows" + (
        f"; did you mean {match}?" if match else "."
    )
