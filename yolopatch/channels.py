"""YOLOv5's parse_model channel and stride bookkeeping, simulated on yaml rows without building anything."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.modelyaml import From
from yolopatch.operators import OPERATORS, operator_names
from yolopatch.targets import yolov5

# Operators register in parse_model's (c1, c2) collection like Conv does.
CHANNEL_MODULES = yolov5.CHANNEL_MODULES | operator_names()
STRIDED = yolov5.STRIDED | frozenset(op.name for op in OPERATORS.values() if op.strided)
UPSAMPLING = yolov5.UPSAMPLING
HEADS = yolov5.HEADS
KNOWN_MODULES = CHANNEL_MODULES | yolov5.OTHER_KNOWN


@dataclass(frozen=True)
class Geometry:
    """Model-wide numbers parse_model reads from the yaml."""

    width: float
    depth: float
    divisor: int
    outputs: int
    input_channels: int


@dataclass(frozen=True)
class Assumption:
    """A layer whose module yolopatch does not know: numbers after it rest on YOLOv5's fallback rule."""

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


def normalize_module(name: str) -> str:
    return name[len("torch.") :] if name.startswith("torch.nn.") else name


def make_divisible(x: float, divisor: int) -> int:
    return math.ceil(x / divisor) * divisor


def geometry(values: dict[str, Any]) -> Geometry:
    anchors = values.get("anchors", 3)
    anchors_per_level = len(anchors[0]) // 2 if isinstance(anchors, list) and anchors else anchors
    nc = values.get("nc", 80)
    outputs = (
        anchors_per_level * (nc + 5) if isinstance(anchors_per_level, int) and isinstance(nc, int) else -1
    )
    return Geometry(
        width=float(values.get("width_multiple", 1.0)),
        depth=float(values.get("depth_multiple", 1.0)),
        divisor=int(values.get("channel_multiple") or 8),
        outputs=outputs,
        input_channels=int(values.get("ch", 3)),
    )


def scaled_channels(c2: int, geo: Geometry) -> int:
    """parse_model's output channels for a channel module whose first argument is c2."""
    return c2 if c2 == geo.outputs else make_divisible(c2 * geo.width, geo.divisor)


def argument_for_channels(channels: int, geo: Geometry) -> int | None:
    """The yaml argument that parse_model scales to exactly `channels`, closest to channels / width."""
    guess = channels / geo.width
    candidates = range(max(1, math.floor(guess) - 2 * geo.divisor), math.ceil(guess) + 2 * geo.divisor + 1)
    exact = [c for c in candidates if scaled_channels(c, geo) == channels]
    return min(exact, key=lambda c: (abs(c - guess), c)) if exact else None


def layer_stride(module: str, args: Sequence[Any]) -> Fraction | None:
    """How much one layer divides the resolution (a Fraction below 1 upsamples); None when unknown."""
    module = normalize_module(module)
    if module in STRIDED:
        return _int_arg(args, 2, 1)
    if module in UPSAMPLING:
        step = _int_arg(args, 2, 1)
        return None if step is None else 1 / step
    if module == "Focus":
        return Fraction(2)
    if module == "nn.Upsample":
        scale = args[1] if len(args) > 1 else None
        return Fraction(1) / Fraction(scale) if isinstance(scale, (int, float)) and scale > 0 else None
    if module == "nn.MaxPool2d":
        return _int_arg(args, 1, _int_arg(args, 0, 1))
    if module in ("Contract", "Expand"):
        gain = _int_arg(args, 0, 2)
        return None if gain is None else (gain if module == "Contract" else 1 / gain)
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
    for index, (source, _number, module, args) in enumerate(rows):
        module = normalize_module(module)
        inputs = [source] if isinstance(source, int) else list(source)
        for f in inputs:
            _check_source(index, f, name)
        before = [start if not shapes and f == -1 else shapes[f] for f in inputs]
        single = isinstance(source, int)
        unknown = module not in KNOWN_MODULES and module not in hints.modules and index not in hints.layers
        own = Assumption(index, module) if module not in KNOWN_MODULES else None
        c2, c2_assumed = _output_channels(index, module, args, before, single, geo, hints)
        if unknown:
            c2_assumed = own
            warnings.append(
                f"layer {index}: {module} is not a module yolopatch knows; its channels are assumed to be its "
                f"input's (YOLOv5's rule) and its stride 1. To be sure, {own.remedy() if own else ''}."
            )
        step = layer_stride(module, args)
        stride = (
            None if before[0].stride is None or step is None or module in HEADS else before[0].stride * step
        )
        shapes.append(
            Shape(
                c1=before[0].c2 if single else None,
                c2=c2,
                stride=stride,
                c1_assumed=before[0].c2_assumed if single else None,
                c2_assumed=c2_assumed,
                stride_assumed=own or before[0].stride_assumed,
            )
        )
    return Simulation(shapes=tuple(shapes), warnings=tuple(warnings))


def _output_channels(
    index: int,
    module: str,
    args: Sequence[Any],
    before: list[Shape],
    single: bool,
    geo: Geometry,
    hints: ChannelHints,
) -> tuple[int | None, Assumption | None]:
    """parse_model's output channels, and the unknown module they rest on (None: they are known)."""
    first, inherited = before[0].c2, next((s.c2_assumed for s in before if s.c2_assumed), None)
    rule = hints.modules.get(module)
    if index in hints.layers:
        return hints.layers[index], None
    if module in CHANNEL_MODULES or rule == "arg":
        return (scaled_channels(args[0], geo) if args and _is_int(args[0]) else None), None
    if module == "Concat":
        known = [s.c2 for s in before if s.c2 is not None]
        return (sum(known) if len(known) == len(before) else None), inherited
    if module in HEADS:
        return None, None
    if module in ("Contract", "Expand"):
        gain = args[0] if args and _is_int(args[0]) else 2
        if first is None:
            return None, inherited
        return (first * gain**2 if module == "Contract" else first // gain**2), inherited
    return (first if single else None), inherited


def _check_source(index: int, f: int, name: str) -> None:
    if f >= index or (f < 0 and index + f < 0 and not (index == 0 and f == -1)):
        raise YolopatchError(
            f"{name}: layer {index} takes input from {f}, which is not an earlier layer; fix its `from`."
        )


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
