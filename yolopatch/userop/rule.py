"""A user module's rule: how its output channels and size follow its input and its arguments.

Channels: `keep` (the input's), `conv` (an output-channel argument), `csp` (conv plus the yaml's repeat
count) or `N*c1` (a fixed multiple of the input's, N >= 2: a down block's 2*c1, ReOrg's 4*c1). Stride: "1",
"2", "1/2" (fixed), "arg:NAME" (a constructor argument is the stride) or "up:NAME" (an upsampling factor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.errors import OptionError
from yolopatch.userop.source import ClassSource

CHANNEL_RULES = ("keep", "conv", "csp", "N*c1")
_MULTIPLE = re.compile(r"([2-9]|[1-9][0-9]+)\*c1")


def is_channel_rule(text: str) -> bool:
    """keep, conv, csp or N*c1 with a whole N of at least 2."""
    return text in CHANNEL_RULES[:3] or _MULTIPLE.fullmatch(text) is not None


def multiple_rule(multiple: int) -> str:
    """The channels of a block whose output has `multiple` times its input's channels."""
    return f"{multiple}*c1"


@dataclass(frozen=True)
class Rule:
    """channels: keep | conv | csp | N*c1. stride: "1", "2", "1/2" (fixed), "arg:NAME" (the constructor
    argument NAME is the stride) or "up:NAME" (NAME is the upsampling factor)."""

    channels: str
    stride: str = "1"

    def __str__(self) -> str:
        return self.channels if self.stride == "1" else f"{self.channels}:{self.stride}"

    @property
    def multiple(self) -> int | None:
        """N of an N*c1 rule: the output has N times the input's channels (None: another rule)."""
        return int(self.channels.split("*")[0]) if _MULTIPLE.fullmatch(self.channels) else None

    @property
    def stride_param(self) -> str | None:
        return self.stride.split(":", 1)[1] if ":" in self.stride else None

    @property
    def fixed_stride(self) -> Fraction | None:
        return None if ":" in self.stride else Fraction(self.stride)

    @property
    def upsamples(self) -> bool:
        return self.stride.startswith("up:") or (self.fixed_stride is not None and self.fixed_stride < 1)


def parse_rule(text: str, source: ClassSource) -> Rule:
    """`--rule keep`, `conv:2`, `keep:1/2`, `conv:arg:stride`, `keep:up:scale`, `2*c1:2`."""
    channels, _, stride = text.strip().partition(":")
    stride = stride or "1"
    ok = is_channel_rule(channels)
    if stride.startswith(("arg:", "up:")):
        ok = ok and source.param(stride.split(":", 1)[1]) is not None
    else:
        try:
            ok = ok and Fraction(stride) > 0 and stride in ("1", "2", "1/2", "4", "1/4")
        except (ValueError, ZeroDivisionError):
            ok = False
    if not ok:
        raise OptionError(
            "--rule",
            f"--rule {text}: write CHANNELS[:STRIDE]: CHANNELS keep, conv, csp or N*c1 (a fixed multiple of the "
            "input channels, 2*c1); STRIDE 1, 2, 1/2 (fixed), arg:PARAM (a constructor argument is the stride) or "
            f"up:PARAM (an upsampling factor), PARAM one of {', '.join(p.name for p in source.params) or 'none'}.",
        )
    return Rule(channels, stride)


FUSION_OUT = ("sum", "first", "last", "input:K", "equal", "arg:PARAM", "M*input:K")
FUSION_SIZE = ("input:K", "equal")
SIZE_PATTERNS = ("equal", "down", "up")  # all inputs one size; each half the previous; each twice it
_INPUT = re.compile(r"(?:([2-9])\*)?input:([0-9])")


@dataclass(frozen=True)
class FusionRule:
    """A fusion class's rules (its forward takes one list of maps), and the constraints on its inputs.

    out: sum | first | last | input:K | equal (all inputs one width, the output has it) | arg:PARAM (an
    output-channel argument, scaled like Conv's) | M*input:K. size: input:K (the output has input K's
    size) | equal (all inputs one size). `counts`: the numbers of inputs it takes (empty: any, 2 or more);
    `widths`: "any" or "equal"; `sizes`: the size patterns it takes (SIZE_PATTERNS; all three: any);
    `channels_as`: how its constructor takes the input channels ("list", "int": one width for all, "": not).
    """

    out: str
    size: str
    counts: tuple[int, ...] = ()
    widths: str = "any"
    sizes: tuple[str, ...] = SIZE_PATTERNS
    channels_as: str = "list"

    def __str__(self) -> str:
        return f"out={self.out},size={self.size}"

    @property
    def out_param(self) -> str | None:
        return self.out[4:] if self.out.startswith("arg:") else None

    def constraints(self) -> str:
        counts = " or ".join(map(str, self.counts)) if self.counts else "any number of"
        sizes = "any" if set(self.sizes) == set(SIZE_PATTERNS) else " or ".join(self.sizes)
        return f"{counts} inputs; widths {self.widths}; sizes {sizes}"

    def output_channels(self, widths: list[int], first_arg: Any, scale: Any) -> int:
        """The output channels from the inputs' (`scale`: parse_model's width scaling of an argument)."""
        if self.out_param:
            return int(scale(first_arg))
        if self.out in ("sum",):
            return sum(widths)
        if self.out in ("first", "equal"):
            return widths[0]
        if self.out == "last":
            return widths[-1]
        match = _INPUT.fullmatch(self.out)
        assert match is not None
        return int(match.group(1) or 1) * widths[int(match.group(2))]

    def sized_by(self, count: int) -> int:
        """Which input's size the output has."""
        return int(self.size.split(":")[1]) if self.size.startswith("input:") else 0

    def problem(self, widths: list[int], strides: list[Fraction]) -> str | None:
        """What is wrong with these inputs (channels, cumulative strides) for this class (None: nothing)."""
        if self.counts and len(widths) not in self.counts:
            return f"it takes {' or '.join(map(str, self.counts))} inputs, and this row has {len(widths)}"
        if len(widths) < 2:
            return "it fuses a list of maps, and this row reads one"
        needed = max(
            [self.sized_by(len(widths))] + [int(m.group(2)) for m in [_INPUT.fullmatch(self.out)] if m]
        )
        if needed >= len(widths):
            return f"its rule {self} reads input {needed}, and this row has {len(widths)} inputs"
        if self.widths == "equal" and len(set(widths)) > 1:
            return f"it needs equal input widths, and the inputs have {', '.join(map(str, widths))} channels"
        pattern = size_pattern(strides)
        if set(self.sizes) != set(SIZE_PATTERNS) and pattern not in self.sizes:
            shown = ", ".join(f"/{s}" for s in strides)
            return f"it takes inputs of sizes {' or '.join(self.sizes)}, and these have strides {shown}"
        return None


def size_pattern(strides: list[Fraction]) -> str:
    """equal, down (each input half the previous's size), up (twice it) or other."""
    steps = {b / a for a, b in zip(strides, strides[1:], strict=False)}
    return {frozenset({1}): "equal", frozenset({2}): "down", frozenset({Fraction(1, 2)}): "up"}.get(
        frozenset(steps), "other"
    )


def parse_fusion_rule(text: str, params: tuple[str, ...]) -> tuple[str, str]:
    """`--rule out=sum,size=input:1` of a fusion class: (out, size)."""
    terms = dict(part.partition("=")[::2] for part in text.replace(" ", "").split(","))
    out, size = terms.get("out", ""), terms.get("size", "")
    ok = set(terms) <= {"out", "size"} and bool(out) and bool(size)
    ok = ok and (
        out in ("sum", "first", "last", "equal")
        or _INPUT.fullmatch(out) is not None
        or (out.startswith("arg:") and out[4:] in params)
    )
    ok = ok and (size == "equal" or re.fullmatch(r"input:[0-9]", size) is not None)
    if not ok:
        raise OptionError(
            "--rule",
            f"--rule {text}: a fusion class's rule is out=OUT,size=SIZE: OUT one of sum, first, last, input:K, "
            f"equal, arg:PARAM (PARAM one of {', '.join(params) or 'none'}) or M*input:K; SIZE input:K or equal.",
        )
    return out, size


@dataclass(frozen=True)
class BackboneSpec:
    """A backbone's outputs, in the order its forward returns them: widths (channels) and strides.
    `factory`: "" for a class, "function" for a factory function of the file, "timm" for `timm:NAME`."""

    widths: tuple[int, ...]
    strides: tuple[int, ...]
    factory: str = ""

    def __str__(self) -> str:
        return ", ".join(f"{w} ch /{s}" for w, s in zip(self.widths, self.strides, strict=True))

    def position(self, stride: int) -> int | None:
        """The output at `stride` (the last one, when several have it); None: none."""
        found = [i for i, s in enumerate(self.strides) if s == stride]
        return found[-1] if found else None
