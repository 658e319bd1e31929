"""A cfg built in PyTorch with yolopatch's own blocks, as darknet computes each section (imports torch:
only `check` uses it).

Every layer reads what `graph.walk` says it reads; `[yolo]`, `[region]` and the other heads pass their input
through and are the model's outputs. The operators' own section types (`[involution]`, `[cbam]`, ...) are
built from the operators' templates with the keys the section carries.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from yolopatch.darknet.cfg import Cfg, Section
from yolopatch.darknet.forms import key_name
from yolopatch.darknet.graph import IMAGE, ROUTES, Node, route_groups, walk
from yolopatch.errors import YolopatchError
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "leaky": lambda: nn.LeakyReLU(0.1),
    "mish": nn.Mish,
    "swish": nn.SiLU,
    "silu": nn.SiLU,
    "logistic": nn.Sigmoid,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
}


class Layer(nn.Module):
    """One section: `i` its index, `f` what it reads (absolute, -1 the image), `kind` its section type."""

    def __init__(self, node: Node, body: nn.Module | None = None):
        super().__init__()
        self.i, self.f, self.kind = node.index, list(node.sources), node.kind
        self.body = body if body is not None else nn.Identity()

    def forward(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        combine = _COMBINE.get(self.kind)
        return combine(self, inputs) if combine else self.body(inputs[0])


def _route(layer: Layer, inputs: list[torch.Tensor]) -> torch.Tensor:
    out = torch.cat(inputs, 1) if len(inputs) > 1 else inputs[0]
    groups, group = layer.groups  # type: ignore[misc]
    return out.chunk(groups, 1)[group] if groups > 1 else out


def _shortcut(layer: Layer, inputs: list[torch.Tensor]) -> torch.Tensor:
    out = inputs[0]
    for other in inputs[1:]:
        if other.shape != out.shape:
            raise ValueError(f"[shortcut] adds {list(other.shape)} to {list(out.shape)}")
        out = out + other
    return layer.body(out)


def _scale(_layer: Layer, inputs: list[torch.Tensor]) -> torch.Tensor:
    return inputs[1] * inputs[0]  # the gate (this layer's input) times the `from` layer's output


_COMBINE = {
    "route": _route,
    "route_lhalf": _route,
    "shortcut": _shortcut,
    "scale_channels": _scale,
    "sam": _scale,
}


class DarknetModel(nn.Module):
    """The cfg's layers in order; forward returns the heads' outputs."""

    def __init__(self, layers: Sequence[Layer], heads: Sequence[int]):
        super().__init__()
        self.model = nn.ModuleList(layers)
        self.heads = list(heads)
        self.stride = torch.zeros(len(heads))

    def layers(self) -> list[Layer]:
        return cast(list[Layer], list(self.model))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for layer in self.layers():
            inputs = [x if s == IMAGE else outputs[s] for s in layer.f]
            outputs.append(layer(inputs))
        return [outputs[i] for i in self.heads]


# the user's operators a cfg uses, by section type: (the operator, its adapter class)
Users = Mapping[str, tuple[Operator, type]]


def build_cfg(cfg: Cfg, users: Users | None = None) -> DarknetModel:
    """Build every layer (a section of one of the `users` operators' types with its adapter class); raise
    YolopatchError naming the section yolopatch cannot build."""
    nodes = walk(cfg)
    channels = {IMAGE: cfg.net.number("channels", 3)} | {n.index: n.channels for n in nodes}
    layers = []
    for section, node in zip(cfg.sections, nodes, strict=True):
        c1 = channels[node.sources[0]]
        layer = Layer(node, _body(cfg, section, node, c1, users or {}))
        if node.kind in ROUTES:
            layer.groups = route_groups(section)  # type: ignore[assignment]
        layers.append(layer)
    model = DarknetModel(layers, [n.index for n in nodes if n.head])
    size = 256
    with torch.no_grad():
        model.eval()
        outputs = model(torch.zeros(1, channels[IMAGE] or 3, size, size))
    model.stride = torch.tensor([size / out.shape[-2] for out in outputs])
    return model


def _body(cfg: Cfg, section: Section, node: Node, c1: int | None, users: Users) -> nn.Module | None:
    kind = node.kind
    if kind == "convolutional":
        return _conv(section, c1 or 0)
    if kind == "maxpool":
        return _MaxPool(
            section.number("size", section.number("stride", 1)), section.number("stride", 1), section
        )
    if kind == "avgpool":
        return nn.AdaptiveAvgPool2d(1)
    if kind == "upsample":
        return nn.Upsample(scale_factor=section.number("stride", 2), mode="nearest")
    if kind == "shortcut":
        return ACTIVATIONS[section.get("activation") or "linear"]()
    if kind == "reorg":
        return nn.PixelUnshuffle(section.number("stride", 2))
    if kind in ROUTES or kind in ("scale_channels", "sam", "dropout") or node.head:
        return None
    if kind in users:
        user, cls = users[kind]
        return _operator(user, section, c1 or 0, node.channels or 0, cls)
    op = next((o for o in OPERATORS.values() if o.name.lower() == kind), None)
    if op is None:
        raise YolopatchError(
            f"{cfg.place(section)}: yolopatch's builder has no block for [{kind}] (your own operators are those "
            "`yolopatch ops` lists, recorded by `ops add`)."
        )
    return _operator(op, section, c1 or 0, node.channels or 0)


def _conv(section: Section, c1: int) -> nn.Module:
    size, stride = section.number("size", 1), section.number("stride", 1)
    padding = size // 2 if section.number("pad", 0) else section.number("padding", 0)
    bn = bool(section.number("batch_normalize", 0))
    activation = section.get("activation") or "logistic"
    if activation not in ACTIVATIONS:
        raise YolopatchError(
            f"[convolutional] at line {section.line}: activation={activation} is not built in."
        )
    parts: list[nn.Module] = [
        nn.Conv2d(
            c1,
            section.number("filters", 1),
            size,
            stride,
            padding,
            groups=section.number("groups", 1),
            bias=not bn,
        )
    ]
    if bn:
        parts.append(nn.BatchNorm2d(section.number("filters", 1), momentum=0.03, eps=1e-4))
    parts.append(ACTIVATIONS[activation]())
    return nn.Sequential(*parts)


class _MaxPool(nn.Module):
    """darknet's maxpool: `size - 1` of padding (or padding=), split before and after, never taken as a max."""

    def __init__(self, size: int, stride: int, section: Section):
        super().__init__()
        total = section.number("padding", size - 1)
        self.pad = (total // 2, total - total // 2) * 2
        self.pool = nn.MaxPool2d(size, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(F.pad(x, self.pad, value=float("-inf")))


def _operator(op: Operator, section: Section, c1: int, c2: int, cls: type | None = None) -> nn.Module:
    """The operator's block from the section's keys: a built-in's template class, or the adapter `cls` of
    the user's own."""
    if cls is None:
        cls = getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)
    values: dict[str, Any] = {}
    for option in op.options:
        text = section.get(key_name(option.name))
        if text is not None:
            values[option.name] = option.parse(text)
    if op.strided:
        values["s"] = section.number("stride", 1)
    try:
        return cls(c1, c2, **values)
    except (ValueError, TypeError) as exc:
        raise YolopatchError(f"[{section.written}] at line {section.line}: {exc}") from None
