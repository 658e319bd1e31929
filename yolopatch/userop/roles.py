"""The role map: which constructor parameter receives the input channels, the output channels, the repeat
count or the stride, read from the parameter names modules are written with, confirmed or overridden by
`--map PARAM=ROLE`.

The map decides where a channel count may go: a count is only ever passed to a parameter it names as
channels, so a class without an output-channel parameter is never given c2 (SEAttention's `reduction`,
SEAM's depth `n` and TripletAttention's flag stay at their defaults).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.userop.params import Param
from yolopatch.userop.source import ClassSource

# The spellings of real modules' constructors (case-insensitive).
INPUT_CHANNELS = frozenset(
    "c1 c c_in ch ch_in cin channels channel dim dim_in in_dim inp inc in_c in_ch in_chs in_size in_channel "
    "in_channels input_channels in_planes inplanes in_features nin op_channel features num_channels n_channels "
    "n_feats inc_list in_channel_list in_channels_list channel_list channels_list ch_list in_dims dims c1s "
    "chs".split()
)
OUTPUT_CHANNELS = frozenset(
    "c2 c_out ch_out cout ouc outc oup out_c out_ch out_chs out_channel out_channels output_channels out_planes outplanes "
    "dim_out out_dim nout out_features".split()
)
STRIDES = frozenset({"s", "stride"})
UPSAMPLING = frozenset({"scale", "scale_factor", "up_factor", "upscale", "upscale_factor"})
REPEATS = frozenset({"n"})

ROLES = ("c1", "c2", "n", "stride", "up", "-")
ROLE_HELP = {
    "c1": "the input channels",
    "c2": "the output channels (scaled by width like Conv's)",
    "n": "the yaml's repeat count (a CSP block's number of bottlenecks)",
    "stride": "the stride (it divides the size)",
    "up": "the upsampling factor (it multiplies the size)",
    "-": "an ordinary option: its default or the --set value",
}


@dataclass(frozen=True)
class RoleMap:
    """Each parameter's role, and where each role came from ("name" or "--map")."""

    roles: Mapping[str, str]
    declared: frozenset[str]

    def having(self, role: str) -> str | None:
        return next((p for p, r in self.roles.items() if r == role), None)

    def describe(self, source: ClassSource, values: Mapping[str, object]) -> str:
        """`(channel=c1, reduction=16)`: the constructor as yolopatch will call it."""
        parts = []
        for p in source.params:
            role = self.roles[p.name]
            parts.append(
                f"{p.name}={role}" if role != "-" else f"{p.name}={values.get(p.name, p.default_text)}"
            )
        return f"({', '.join(parts)})"


def parse_map(terms: Sequence[str]) -> dict[str, str]:
    """`--map PARAM=ROLE` terms."""
    declared: dict[str, str] = {}
    for term in terms:
        key, sep, role = (part.strip() for part in term.partition("="))
        if not sep or not key or role not in ROLES:
            choices = "; ".join(f"{r}: {h}" for r, h in ROLE_HELP.items())
            raise OptionError("--map", f"--map {term}: write PARAM=ROLE, ROLE one of {choices}.")
        declared[key] = role
    return declared


def role_map(source: ClassSource, declared: Mapping[str, str]) -> RoleMap:
    """Roles from the names, then the declared ones on top; each role held by at most one parameter."""
    names = {p.name for p in source.params}
    unknown = sorted(set(declared) - names)
    if unknown:
        raise OptionError(
            "--map",
            f"--map {unknown[0]}=...: {source.name}'s constructor has no parameter {unknown[0]}; its "
            f"parameters: {', '.join(p.name for p in source.params) or 'none'}.",
        )
    roles: dict[str, str] = {}
    for param in source.params:
        roles[param.name] = declared.get(param.name) or _by_name(param, roles)
    for role in ("c1", "c2", "n", "stride", "up"):
        holders = [p for p, r in roles.items() if r == role]
        if len(holders) > 1:
            raise YolopatchError(
                f"{source.path}:{source.line}: {source.name}: {' and '.join(holders)} are both mapped to {role}; "
                f"map one of them to '-' (--map {holders[-1]}=-)."
            )
    return RoleMap(roles, frozenset(declared))


def _by_name(param: Param, taken: Mapping[str, str]) -> str:
    """A channel or repeat role only for a parameter that may hold a whole number, and only once."""
    name = param.name.lower()
    default = param.default
    whole = isinstance(default, int) and not isinstance(default, bool)
    widths = isinstance(default, (list, tuple)) and all(isinstance(v, int) for v in default)  # a fusion's
    countable = param.required or whole or widths
    held = set(taken.values())
    for role, spellings in (("c1", INPUT_CHANNELS), ("c2", OUTPUT_CHANNELS), ("n", REPEATS)):
        if name in spellings and countable and role not in held:
            return role
    if name in STRIDES and countable and "stride" not in held:
        return "stride"
    if name in UPSAMPLING and "up" not in held and not isinstance(param.default, bool):
        return "up"
    return "-"
