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
    from yolopatch.formats.base import Listing
    from yolopatch.render.model import inputs_lines, layers_table

    with errors():
        result = list_layers(model, channels or [], scale)
    if isinstance(result, Listing):  # a model format other than the yaml
        from yolopatch.render.sections import sections_table

        notes(result.notes)
        out.print(sections_table(result, out.width))
        return
    notes(result.warnings)
    out.print(layers_table(result.layers, result.shapes, out.width))
    for line in inputs_lines(result.layers, result.shapes):
        out.print(line, markup=False)
