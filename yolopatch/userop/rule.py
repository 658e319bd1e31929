"""A user module's rule: how its output channels and size follow its input and its arguments.

Channels: `keep` (the input's), `conv` (an output-channel argument), `csp` (conv plus the yaml's repeat
count) or `N*c1` (a fixed multiple of the input's, N >= 2: a down block's 2*c1, ReOrg's 4*c1). Stride: "1",
"2", "1/2" (fixed), "arg:NAME" (a constructor argument is the stride) or "up:NAME" (an upsampling factor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

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
