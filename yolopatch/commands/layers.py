"""`layers`: a model's layers with their indices, channels (at each scale) and strides, to choose --layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.channels import Shape, geometries, parse_channel_hints, refuse_bad_rows, simulate
from yolopatch.commands.operators import user_operators
from yolopatch.errors import OptionError
from yolopatch.files import read_text
from yolopatch.formats.base import Listing
from yolopatch.formats.registry import format_for
from yolopatch.modelyaml import Layer, parse_model_yaml
from yolopatch.targets.registry import target_for


@dataclass(frozen=True)
class LayersResult:
    layers: Sequence[Layer]
    shapes: Mapping[str, Sequence[Shape]]  # per scale ("" without scales)
    warnings: Sequence[str]


def list_layers(model: Path, channels: Sequence[str], scale: str | None) -> LayersResult | Listing:
    """A model yaml's layers, or, for a file of another format, that format's listing."""
    fmt = format_for(model)
    if fmt is not None:
        for option, given in (("--channels", bool(channels)), ("--scale", scale is not None)):
            if given:
                raise OptionError(option, f"{option} does not apply to a {fmt.name} file ({model}).")
        return fmt.layers(read_text(model), str(model))
    hints = parse_channel_hints(channels)
    parsed = parse_model_yaml(read_text(model), str(model))
    rules = target_for(parsed.values).rules
    rows = parsed.logical_rows()
    geos = geometries(parsed.values, rules, scale, tuple(user_operators().values()))
    refuse_bad_rows(parsed, next(iter(geos.values())).rules, hints)
    sims = {name: simulate(rows, geo, str(model), hints) for name, geo in geos.items()}
    return LayersResult(
        parsed.layers, {n: s.shapes for n, s in sims.items()}, next(iter(sims.values())).warnings
    )
