"""A family's parse_model tables, as data: which modules take (c1, c2), which have a stride argument, which
are heads, and the modules with channel rules of their own. Each target (yolopatch.targets) defines one."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from yolopatch.csp import CspBlock

# (args, channels of the inputs, channels of the previous row) -> output channels (None: not a feature map)
ChannelRule = Callable[[Sequence[Any], Sequence[int | None], int | None], int | None]
# args -> how much the module divides the resolution (None: unknown)
StrideRule = Callable[[Sequence[Any]], Fraction | None]


@dataclass(frozen=True)
class Rules:
    family: str
    channel_modules: frozenset[str]  # parse_model's (c1, c2) collection: c2 = scaled first argument
    strided: frozenset[str]  # modules whose third argument is their stride
    upsampling: frozenset[str]  # modules whose third argument is their upsampling factor
    heads: frozenset[str]  # outputs of the model: nothing follows them
    passthrough: frozenset[str]  # known modules whose output keeps the input's channels
    not_replaceable: Mapping[str, str]  # why such a row cannot become an operator ({op}: "an Involution")
    stride_rules: Mapping[str, StrideRule] = field(default_factory=dict)
    special: Mapping[str, ChannelRule] = field(default_factory=dict)
    stride_from_last: frozenset[str] = frozenset()  # modules whose output has their last input's size
    exempt: str = "no"  # the c2 value parse_model leaves unscaled: outputs per anchor (anchor heads), or nc
    csp: Mapping[str, CspBlock] = field(default_factory=dict)  # CSP blocks an operator may go into
    non_ascii: str = ""  # what the family's yaml reading does to non-ASCII text in rows ("": nothing)
    # users' fusion classes, registered by parse_model's fusion branch: name -> FusionRule
    fusion: Mapping[str, Any] = field(default_factory=dict)
    # users' backbones (their row returns a list of maps): name -> the strides of their outputs
    backbones: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    @property
    def known(self) -> frozenset[str]:
        return (
            self.channel_modules
            | self.heads
            | self.passthrough
            | frozenset(self.special)
            | frozenset(self.fusion)
            | frozenset(self.backbones)
            | {"Concat"}
        )
