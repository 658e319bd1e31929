"""YOLOv5's parse_model channel and stride bookkeeping, simulated on yaml rows without building anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.errors import YolopatchError
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
class Shape:
    """A layer's channels in and out and its cumulative stride as parse_model gives them (None: unknown)."""

    c1: int | None
    c2: int | None
    stride: Fraction | None


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
    rows: Sequence[tuple[From, int, str, Sequence[Any]]], geo: Geometry, name: str = "<yaml>"
) -> Simulation:
    """Walk the rows as parse_model does; raise YolopatchError on a `from` that points nowhere."""
    channels: list[int | None] = []
    strides: list[Fraction | None] = []
    shapes, warnings = [], []
    for index, (source, _number, module, args) in enumerate(rows):
        module = normalize_module(module)
        inputs = [source] if isinstance(source, int) else list(source)
        for f in inputs:
            _check_source(index, f, name)
        c_in = [_lookup(channels, f, geo.input_channels) for f in inputs]
        s_in = [_lookup(strides, f, Fraction(1)) for f in inputs]
        c1 = c_in[0] if isinstance(source, int) else None
        c2 = _output_channels(module, args, c_in, isinstance(source, int), geo)
        if module not in KNOWN_MODULES:
            warnings.append(
                f"layer {index}: {module} is not a module yolopatch knows; assuming YOLOv5's rule "
                "(its output keeps its input's channels)."
            )
        step = layer_stride(module, args)
        stride = None if s_in[0] is None or step is None or module in HEADS else s_in[0] * step
        channels.append(c2)
        strides.append(stride)
        shapes.append(Shape(c1=c1, c2=c2, stride=stride))
    return Simulation(shapes=tuple(shapes), warnings=tuple(warnings))


def _output_channels(
    module: str, args: Sequence[Any], c_in: list[int | None], single: bool, geo: Geometry
) -> int | None:
    first = c_in[0]
    if module in CHANNEL_MODULES:
        return scaled_channels(args[0], geo) if args and _is_int(args[0]) else None
    if module == "Concat":
        known = [c for c in c_in if c is not None]
        return sum(known) if len(known) == len(c_in) else None
    if module in HEADS:
        return None
    if module in ("Contract", "Expand"):
        gain = args[0] if args and _is_int(args[0]) else 2
        if first is None:
            return None
        return first * gain**2 if module == "Contract" else first // gain**2
    return first if single else None


def _check_source(index: int, f: int, name: str) -> None:
    if f >= index or (f < 0 and index + f < 0 and not (index == 0 and f == -1)):
        raise YolopatchError(
            f"{name}: layer {index} takes input from {f}, which is not an earlier layer; fix its `from`."
        )


def _lookup(values: list, f: int, first_input: Any) -> Any:
    return first_input if not values and f == -1 else values[f]


def _int_arg(args: Sequence[Any], position: int, default: int | Fraction | None) -> Fraction | None:
    if len(args) <= position or args[position] is None:
        return None if default is None else Fraction(default)
    value = args[position]
    return Fraction(value) if _is_int(value) and value > 0 else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
