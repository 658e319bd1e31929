"""What each layer of a cfg reads and produces: absolute sources, channels and cumulative stride.

The bookkeeping follows darknet's parser (parse_network_cfg): a layer reads the one before it unless it
names others (`[route] layers=`, `[shortcut] from=`, `[scale_channels] from=`, `[sam] from=`), a negative
index counts back from the layer itself; `[route]` concatenates (then keeps group `group_id` of `groups`),
`[shortcut]` keeps the previous layer's shape, `[scale_channels]` and `[sam]` the shape of their `from`
layer; `[avgpool]` pools to 1x1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from yolopatch.darknet.cfg import Cfg, Section
from yolopatch.errors import YolopatchError

IMAGE = -1  # the source index of the network's input
HEADS = frozenset({"yolo", "region", "detection", "gaussian_yolo"})
# layers that keep their input's channels and size
KEEPS = frozenset({"dropout", "batchnorm", "softmax", "cost", "activation", "empty", "silence", "yolo"})
KEEPS |= HEADS
# layers that read another layer named by `from=` besides the previous one, and take its shape
FROM_SHAPED = frozenset({"scale_channels", "sam"})
# layers that read `layers=` only: darknet's [route], and [route_lhalf] (the first half of the channels, as
# [route] groups=2 group_id=0), which a PyTorch cfg codebase's own yolov4-tiny.cfg writes
ROUTES = frozenset({"route", "route_lhalf"})


def route_groups(section: Section) -> tuple[int, int]:
    """A route's channel groups and the one it keeps."""
    if section.kind == "route_lhalf":
        return 2, 0
    return max(section.number("groups", 1), 1), section.number("group_id", 0)


@dataclass(frozen=True)
class Node:
    """One layer's place in the graph. `stride` None: pooled to 1x1 (after a global `[avgpool]`);
    `channels` None: unknown. `assumed`: the type is not one darknet's parser defines (channels from
    `filters=` or the input's)."""

    index: int
    kind: str
    sources: tuple[int, ...]
    channels: int | None
    stride: Fraction | None
    head: bool = False
    assumed: bool = False


def resolve(section: Section, value: int) -> int:
    """The absolute index a written index names from `section` (negative: counted back from it)."""
    return section.index + value if value < 0 else value


def sources_of(section: Section, cfg: Cfg) -> tuple[int, ...]:
    """The layers a section reads, absolute; IMAGE for the network's input."""
    previous = section.index - 1 if section.index > 0 else IMAGE
    named = [resolve(section, ref.value) for ref in section.refs()]
    for target, ref in zip(named, section.refs(), strict=True):
        if not 0 <= target < section.index:
            raise YolopatchError(
                f"{cfg.place(section)}: index {ref.value} names layer {target}, which is not an earlier "
                f"layer (0-{section.index - 1})."
            )
    if section.kind in ROUTES:
        if not named:
            raise YolopatchError(f"{cfg.place(section)}: a [{section.kind}] needs layers=.")
        return tuple(named)
    return (previous, *named)


def walk(cfg: Cfg) -> tuple[Node, ...]:
    """Every layer's sources, channels and stride, in order."""
    nodes: list[Node] = []
    image = Node(IMAGE, "image", (), cfg.net.number("channels", 3), Fraction(1))
    for section in cfg.sections:
        sources = sources_of(section, cfg)
        inputs = [image if s == IMAGE else nodes[s] for s in sources]
        nodes.append(_node(section, sources, inputs))
    return tuple(nodes)


def _node(section: Section, sources: tuple[int, ...], inputs: Sequence[Node]) -> Node:
    kind, first = section.kind, inputs[0]
    channels, stride = first.channels, first.stride
    assumed = False
    if kind in ("convolutional", "deconvolutional", "connected"):
        channels = section.number("filters" if kind != "connected" else "output", 1)
        factor = Fraction(_stride(section, 1))
        if kind == "connected":
            stride = None
        elif stride is not None:
            stride = stride / factor if kind == "deconvolutional" else stride * factor
    elif kind in ("maxpool", "local_avgpool"):
        stride = None if stride is None else stride * _stride(section, 1)
    elif kind == "avgpool":
        stride = None
    elif kind == "upsample":
        step = section.number("stride", 2)
        if stride is not None:
            stride = stride * -step if step < 0 else stride / step
    elif kind == "reorg":
        step = section.number("stride", 2)
        channels = None if channels is None else channels * step * step
        stride = None if stride is None else stride * step
    elif kind in ROUTES:
        widths = [node.channels for node in inputs]
        groups = route_groups(section)[0]
        channels = None if None in widths else sum(w for w in widths if w is not None) // groups
    elif kind in FROM_SHAPED:
        channels, stride = inputs[1].channels, inputs[1].stride
    elif kind not in KEEPS and kind != "shortcut":
        channels = (
            section.number("filters", channels)
            if channels is not None
            else section.number("filters", 0) or None
        )
        stride = None if stride is None else stride * _stride(section, 1)
        assumed = True
    return Node(section.index, kind, sources, channels, stride, kind in HEADS, assumed)


def _stride(section: Section, default: int) -> int:
    return max(
        section.number("stride", default), section.number("stride_x", 0), section.number("stride_y", 0), 1
    )


def consumers(nodes: Sequence[Node], index: int) -> list[int]:
    """The layers that read layer `index`."""
    return [node.index for node in nodes if index in node.sources]
