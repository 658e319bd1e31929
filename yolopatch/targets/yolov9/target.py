"""The YOLOv9 target: WongKinYiu/yolov9 checkouts and the `yolo9` pip package (which packages them).

YOLOv9 kept YOLOv5's checkout layout and parse_model (yolopatch.targets.checkout); its tables differ
(docs/yolov7-yolov9-notes.md §2.2): a (c1, c2) set of 15 names where only the first argument is scaled
(RepNCSPELAN4's hidden widths are not), `anchors: 3` although its heads are anchor-free, `Silence` at row 0
passing the image through, `CBLinear` giving a list of tensors and `CBFuse` the channels and size of its
last input. Its own blocks for the built-in builder are in yolopatch.targets.yolov9.blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from yolopatch.rules import Rules
from yolopatch.targets.base import Builtin
from yolopatch.targets.checkout.layout import Layout
from yolopatch.targets.checkout.target import CheckoutTarget

# parse_model's `if m in {...}` set: args = [c1, make_divisible(args[0] * gw, 8), *args[1:]]
CHANNEL_MODULES = frozenset(
    "Conv AConv ConvTranspose Bottleneck SPP SPPF DWConv BottleneckCSP nn.ConvTranspose2d DWConvTranspose2d "
    "SPPCSPC ADown ELAN1 RepNCSPELAN4 SPPELAN".split()
)
REPEAT_INSIDE = frozenset({"BottleneckCSP", "SPPCSPC"})
HEADS = frozenset(
    "Detect DualDetect TripleDetect DDetect DualDDetect TripleDDetect Segment DSegment DualDSegment Panoptic".split()
)
_KEEPS_CHANNELS = "its first argument is not an output channel count"
NOT_REPLACEABLE = {
    **{head: "it is a head, not a feature map" for head in HEADS},
    "Concat": "it joins several inputs; {op} takes one",
    "CBFuse": "it sums several resized inputs; {op} takes one",
    "CBLinear": "it outputs a list of tensors for CBFuse, not one feature map",
    "Silence": "it passes the image through to the rows that read layer 0",
    "MP": _KEEPS_CHANNELS,
    "SP": _KEEPS_CHANNELS,
    "ReOrg": "its space-to-depth step is not a convolution",
    "nn.Upsample": _KEEPS_CHANNELS,
    "nn.MaxPool2d": _KEEPS_CHANNELS,
    "nn.BatchNorm2d": _KEEPS_CHANNELS,
    "nn.Identity": "it has no output channel argument",
    "ConvTranspose": "it upsamples; {op} cannot",
    "nn.ConvTranspose2d": "it upsamples; {op} cannot",
    "DWConvTranspose2d": "it upsamples; {op} cannot",
}


def _int(args: Sequence[Any], at: int, default: int) -> Fraction | None:
    value = args[at] if len(args) > at else default
    return Fraction(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


RULES = Rules(
    family="YOLOv9",
    channel_modules=CHANNEL_MODULES,
    strided=frozenset({"Conv", "DWConv", "nn.Conv2d"}),
    upsampling=frozenset({"ConvTranspose", "nn.ConvTranspose2d", "DWConvTranspose2d"}),
    heads=HEADS,
    passthrough=frozenset(
        {
            "nn.Upsample",
            "nn.MaxPool2d",
            "nn.ZeroPad2d",
            "nn.BatchNorm2d",
            "nn.Identity",
            "MP",
            "SP",
            "Silence",
        }
    ),
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "AConv": lambda args: Fraction(2),
        "ADown": lambda args: Fraction(2),
        "ReOrg": lambda args: Fraction(2),
        "MP": lambda args: _int(args, 0, 2),
        "SP": lambda args: _int(args, 1, 1),
        "CBLinear": lambda args: _int(args, 2, 1),
    },
    special={
        "ReOrg": lambda args, c_in, _previous: None if c_in[0] is None else 4 * c_in[0],
        "CBLinear": lambda args, c_in, _previous: None,  # a list of tensors: nothing 4-D reads it
        "CBFuse": lambda args, c_in, _previous: c_in[-1],
        "Shortcut": lambda args, c_in, _previous: c_in[0],
    },
    stride_from_last=frozenset({"CBFuse"}),
    exempt="no",
    non_ascii="YOLOv9 reads model yamls as ASCII and silently drops those characters",
)

# Classes yolo9 1.0.18 defines in models/common.py, yolo.py and experimental.py.
DEFINED = frozenset(
    "Conv AConv ADown RepConvN SP MP ConvTranspose DWConv DWConvTranspose2d DFL BottleneckBase RBottleneckBase "
    "RepNRBottleneckBase Bottleneck RepNBottleneck Res RepNRes BottleneckCSP CSP RepNCSP CSPBase SPP ASPP "
    "SPPCSPC SPPF ReOrg Contract Expand Concat Shortcut Silence SPPELAN ELAN1 RepNCSPELAN4 ImplicitA ImplicitM "
    "CBLinear CBFuse DetectMultiBackend AutoShape Detections Proto UConv Classify Detect DDetect DualDetect "
    "DualDDetect TripleDetect TripleDDetect Segment DSegment DualDSegment Panoptic BaseModel DetectionModel "
    "SegmentationModel ClassificationModel Sum MixConv2d Ensemble".split()
)


class YOLOv9(CheckoutTarget):
    name = "YOLOv9"
    rules = RULES
    defined = DEFINED
    layout = Layout(
        "YOLOv9",
        "yolo9",
        marks=frozenset({"DualDDetect", "RepNCSPELAN4"}),
        head="DDetect",
        keep="cv2/cv3 outputs (4 x reg_max box and nc class channels per level)",
        loss="utils.loss_tal",
    )
    signature = frozenset(
        "RepNCSPELAN4 ADown AConv ELAN1 SPPELAN CBLinear CBFuse Silence DDetect DualDDetect TripleDDetect "
        "DualDetect TripleDetect".split()
    )
    anchor_style = "int"
    checkout_hint = "PATH/TO/yolov9"
    # in models/detect/yolov9-c.yaml: 9 is the backbone's last RepNCSPELAN4, 1 the first stride-2 Conv
    stock = "models/detect/yolov9-c.yaml"
    example_layers = {"keep": "9 --insert", "conv": "9 --insert", "stride2": "1", "upsample": "nn.Upsample"}

    def builtin(self) -> Builtin:
        from yolopatch.targets.yolov9 import blocks

        return Builtin(
            modules=blocks.BLOCKS,
            repeat_inside=REPEAT_INSIDE,
            heads=frozenset(blocks.BLOCKS) & HEADS,
            input_first=frozenset({"CBLinear"}),
            fuse_differs="re-parameterises RepConvN's two branches into one convolution",
        )


TARGET = YOLOv9()
