"""The YOLOv5 target: YOLOv5 checkouts v3.1 to master, the `yolov5` pip package, ultralytics/yolov3.

YOLOv5's parse_model tables, its checkout layout (shared with YOLOv7 and YOLOv9: yolopatch.targets.checkout)
and its built-in blocks (blocks.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from yolopatch.csp import CspBlock
from yolopatch.rules import Rules
from yolopatch.targets.base import Builtin
from yolopatch.targets.checkout.layout import Layout
from yolopatch.targets.checkout.target import CheckoutTarget

# parse_model's `if m in {...}` set (operators join it when injected): these get
# args = [c1, make_divisible(args[0] * gw), *args[1:]].
CHANNEL_MODULES = frozenset(
    {
        "Conv",
        "GhostConv",
        "Bottleneck",
        "GhostBottleneck",
        "SPP",
        "SPPF",
        "DWConv",
        "MixConv2d",
        "Focus",
        "CrossConv",
        "BottleneckCSP",
        "C3",
        "C3TR",
        "C3SPP",
        "C3Ghost",
        "nn.ConvTranspose2d",
        "DWConvTranspose2d",
        "C3x",
        "nn.Conv2d",  # in the set up to v3.x
    }
)
# parse_model's "insert n" set: the repeat count becomes the block's third argument.
REPEAT_INSIDE = frozenset({"BottleneckCSP", "C3", "C3TR", "C3Ghost", "C3x"})
# Modules whose third yaml argument is their stride.
STRIDED = frozenset({"Conv", "GhostConv", "DWConv", "GhostBottleneck", "CrossConv", "MixConv2d", "nn.Conv2d"})
UPSAMPLING = frozenset({"nn.ConvTranspose2d", "DWConvTranspose2d"})
HEADS = frozenset({"Detect", "Segment"})
# Why a known module's row cannot be replaced by an operator.
NOT_REPLACEABLE = {
    "Concat": "it joins several inputs; {op} takes one",
    "Detect": "it is the detection head, not a feature map",
    "Segment": "it is the segmentation head, not a feature map",
    "nn.Upsample": "its first argument is not an output channel count",
    "nn.MaxPool2d": "its first argument is not an output channel count",
    "nn.ZeroPad2d": "its first argument is not an output channel count",
    "nn.BatchNorm2d": "its first argument is not an output channel count",
    "nn.Identity": "it has no output channel argument",
    "Contract": "its first argument is a gain, not an output channel count",
    "Expand": "its first argument is a gain, not an output channel count",
    "Focus": "its space-to-depth step is not a convolution",
    "nn.ConvTranspose2d": "it upsamples; {op} cannot",
    "DWConvTranspose2d": "it upsamples; {op} cannot",
}

PASSTHROUGH = frozenset({"nn.Upsample", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.BatchNorm2d", "nn.Identity"})


def _gain(args: Sequence[Any]) -> int:
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else 2


# --into: yaml args [c2, shortcut, g, e]
CSP = {"C3": CspBlock("C3", e_at=3)}

RULES = Rules(
    family="YOLOv5",
    channel_modules=CHANNEL_MODULES,
    strided=STRIDED,
    upsampling=UPSAMPLING,
    heads=HEADS,
    passthrough=PASSTHROUGH,
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "Focus": lambda args: Fraction(2),
        "Contract": lambda args: Fraction(_gain(args)),
        "Expand": lambda args: Fraction(1, _gain(args)),
    },
    special={
        "Contract": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] * _gain(args) ** 2,
        "Expand": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] // _gain(args) ** 2,
    },
    exempt="no",
    csp=CSP,
    non_ascii="YOLOv5 v7.0 reads model yamls as ASCII and silently drops those characters",
)

# Classes the family defines (models/common.py and experimental.py, v7.0): a user's module must not take
# one of these names, or the yaml would build YOLOv5's class instead.
DEFINED = frozenset(
    "AutoShape Bottleneck BottleneckCSP C3 C3Ghost C3SPP C3TR C3x Classify Concat Contract Conv CrossConv DWConv "
    "DWConvTranspose2d DetectMultiBackend Detections Expand Focus GhostBottleneck GhostConv Proto SPP SPPF "
    "TransformerBlock TransformerLayer Ensemble MixConv2d Sum Detect Segment Model".split()
)


_BLOCKS = (
    "Conv DWConv DWConvTranspose2d Focus Bottleneck CrossConv BottleneckCSP C3 C3x C3TR C3SPP SPP SPPF GhostConv "
    "GhostBottleneck C3Ghost Contract Expand Detect Segment"
).split()


class YOLOv5(CheckoutTarget):
    name = "YOLOv5"
    rules = RULES
    defined = DEFINED
    layout = Layout(
        "YOLOv5", "yolov5", head="Detect", keep="m convolutions (anchors x (nc + 5) outputs per level)"
    )
    signature = frozenset({"C3", "C3x", "C3TR", "C3SPP", "C3Ghost", "Focus", "Segment"})
    checkout_hint = "PATH/TO/yolov5"
    fallback = True

    def builtin(self) -> Builtin:
        from yolopatch.targets.yolov5 import blocks as modules

        return Builtin(
            modules={name: getattr(modules, name) for name in _BLOCKS},
            repeat_inside=REPEAT_INSIDE,
            heads=HEADS,
            anchor_heads=HEADS,
            scaled_head_argument={"Segment": 3},
            bottleneck=modules.Bottleneck,
        )


TARGET = YOLOv5()
