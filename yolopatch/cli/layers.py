"""`yolopatch layers`: a model's layers, to choose --layers."""

from __future__ import annotations

from yolopatch.cli.common import (
    ChannelsOption,
    ModelArg,
    ScaleOption,
    errors,
    notes,
    out,
)


def layers_command(model: ModelArg, channels: ChannelsOption = None, scale: ScaleOption = None) -> None:
    """List a model's layers with their indices, channels (at each scale) and strides, to choose --layers."""
    from yolopatch.commands.layers import list_layers
    from yolopatch.render.model import layers_table

    with errors():
        result = list_layers(model, channels or [], scale)
    notes(result.warnings)
    out.print(layers_table(result.layers, result.shapes, out.width))
