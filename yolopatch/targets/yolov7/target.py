"""The YOLOv7 target: WongKinYiu/yolov7 checkouts and its pip packagings (`yolov7detect`, `yolov7-easy`).

YOLOv7 kept YOLOv5's checkout layout and parse_model (yolopatch.targets.checkout); its tables differ
(docs/yolov7-yolov9-notes.md §2.1): a (c1, c2) list of 54 names written several to a line, an "insert n"
list for its CSP and downsampling blocks, `MP` halving the size and keeping the channels, `ReOrg` giving
4·c1 at stride 2, and the IDetect/IAuxDetect heads with their implicit layers. Its own blocks for the
built-in builder are in yolopatch.targets.yolov7.blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from yolopatch.rules import Rules
from yolopatch.targets.base import Builtin
from yolopatch.targets.checkout.layout import Layout
from yolopatch.targets.checkout.target import CheckoutTarget

_CSP_FAMILIES = (
    "BottleneckCSP RepBottleneckCSP ResCSP RepResCSP ResXCSP RepResXCSP GhostCSP STCSP ST2CSP".split()
)
_CSP = [f"{name}{kind}" for name in _CSP_FAMILIES for kind in "ABC"]
# parse_model's `if m in [...]` list: args = [c1, make_divisible(args[0] * gw, 8), *args[1:]]
CHANNEL_MODULES = frozenset(
    [
        *"nn.Conv2d Conv RobustConv RobustConv2 DWConv GhostConv RepConv RepConv_OREPA DownC SPP SPPF SPPCSPC".split(),
        *"GhostSPPCSPC MixConv2d Focus Stem GhostStem CrossConv Bottleneck RepBottleneck Res RepRes ResX".split(),
        *"RepResX Ghost SwinTransformerBlock SwinTransformer2Block".split(),
        *_CSP,
    ]
)
# parse_model's "insert n" list: the row's n becomes the block's third argument
REPEAT_INSIDE = frozenset({"DownC", "SPPCSPC", "GhostSPPCSPC", *_CSP})
HEADS = frozenset({"Detect", "IDetect", "IAuxDetect", "IBin", "IKeypoint"})
_KEEPS_CHANNELS = "its first argument is not an output channel count"
NOT_REPLACEABLE = {
    **{head: "it is a head, not a feature map" for head in HEADS},
    "Concat": "it joins several inputs; {op} takes one",
    "Chuncat": "it joins several inputs; {op} takes one",
    "Shortcut": "it adds several inputs; {op} takes one",
    "MP": _KEEPS_CHANNELS,
    "SP": _KEEPS_CHANNELS,
    "ReOrg": "its space-to-depth step is not a convolution",
    "Focus": "its space-to-depth step is not a convolution",
    "Stem": "it downsamples by 4; {op} cannot",
    "nn.Upsample": _KEEPS_CHANNELS,
    "nn.MaxPool2d": _KEEPS_CHANNELS,
    "nn.BatchNorm2d": _KEEPS_CHANNELS,
    "nn.Identity": "it has no output channel argument",
}


def _int(args: Sequence[Any], at: int, default: int) -> Fraction | None:
    value = args[at] if len(args) > at else default
    return Fraction(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _gain(args: Sequence[Any]) -> int:
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else 2


RULES = Rules(
    family="YOLOv7",
    channel_modules=CHANNEL_MODULES,
    strided=frozenset(
        "nn.Conv2d Conv RobustConv RobustConv2 DWConv GhostConv RepConv RepConv_OREPA MixConv2d CrossConv".split()
    ),
    upsampling=frozenset(),
    heads=HEADS,
    passthrough=frozenset(
        {"nn.Upsample", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.BatchNorm2d", "nn.Identity", "MP", "SP"}
    ),
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "DownC": lambda args: _int(args, 1, 2),
        "Stem": lambda args: Fraction(4),
        "GhostStem": lambda args: Fraction(4),
        "Focus": lambda args: Fraction(2),
        "ReOrg": lambda args: Fraction(2),
        "MP": lambda args: _int(args, 0, 2),
        "SP": lambda args: _int(args, 1, 1),
        "Contract": lambda args: Fraction(_gain(args)),
        "Expand": lambda args: Fraction(1, _gain(args)),
    },
    special={
        "ReOrg": lambda args, c_in, _previous: None if c_in[0] is None else 4 * c_in[0],
        "Chuncat": lambda args, c_in, _previous: None if None in c_in else sum(c for c in c_in if c),
        "Shortcut": lambda args, c_in, _previous: c_in[0],
        "Foldcut": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] // 2,
        "Contract": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] * _gain(args) ** 2,
        "Expand": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] // _gain(args) ** 2,
    },
    exempt="no",
    non_ascii="YOLOv7 opens model yamls in the system's encoding (often not UTF-8 on Windows), so the file "
    "may not load there",
)

# Classes yolov7detect 1.0.1 defines in models/common.py, yolo.py and experimental.py.
DEFINED = frozenset(
    [
        *"MP SP ReOrg Concat Chuncat Shortcut Foldcut Conv RobustConv RobustConv2 GhostConv Stem DownC SPP".split(),
        *"Bottleneck Res ResX Ghost SPPCSPC GhostSPPCSPC GhostStem ImplicitA ImplicitM RepConv RepBottleneck".split(),
        *"RepRes RepResX TransformerLayer TransformerBlock Focus SPPF Contract Expand NMS autoShape".split(),
        *"Detections Classify ConvBN OREPA_3x3_RepConv RepConv_OREPA WindowAttention Mlp SwinTransformerLayer".split(),
        *"SwinTransformerBlock WindowAttention_v2 Mlp_v2 SwinTransformerLayer_v2 SwinTransformer2Block".split(),
        *"Detect IDetect IKeypoint IAuxDetect IBin Model CrossConv Sum MixConv2d Ensemble".split(),
        *_CSP,
    ]
)


class YOLOv7(CheckoutTarget):
    name = "YOLOv7"
    rules = RULES
    defined = DEFINED
    layout = Layout(
        "YOLOv7",
        "yolov7",
        marks=frozenset({"IDetect", "IAuxDetect"}),
        head="IDetect",
        keep="m convolutions and implicit ia/im layers (anchors x (nc + 5) outputs per level)",
    )
    signature = frozenset({"IDetect", "IAuxDetect", "IBin", "IKeypoint", "RepConv", "DownC", "Stem", "ReOrg"})
    checkout_hint = "PATH/TO/yolov7"
    # in cfg/training/yolov7.yaml: 50 is the 1x1 Conv before SPPCSPC, 1 the first stride-2 Conv
    stock = "cfg/training/yolov7.yaml"
    example_layers = {"keep": "50 --insert", "conv": "50", "stride2": "1", "upsample": "nn.Upsample"}

    def builtin(self) -> Builtin:
        from yolopatch.targets.yolov7 import blocks

        heads = frozenset(blocks.BLOCKS) & HEADS
        return Builtin(
            modules=blocks.BLOCKS,
            repeat_inside=REPEAT_INSIDE,
            heads=heads,
            anchor_heads=heads,
            fuse_differs="re-parameterises RepConv into one convolution and folds IDetect's implicit layers",
        )


TARGET = YOLOv7()
