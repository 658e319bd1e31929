"""parse_model's tables as data, read from ultralytics' own code across 8.1.0 to 8.4.x
(docs/ultralytics-notes.md): which modules get the (c1, c2) handling, the heads, the pass-through layers, the
rows --into cannot replace and why, the CSP blocks --into fills, and the classes ultralytics.nn.modules
exports (a user's module must not take their names).

`scales:` gives [depth, width, max_channels] per scale; parse_model computes
c2 = make_divisible(min(c2, max_channels) * width, 8) for its (c1, c2) collection, except when c2 equals nc.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from yolopatch.csp import CspBlock
from yolopatch.rules import Rules
from yolopatch.userop.source import ImportKind

# parse_model's (c1, c2) collection, the union over 8.1 to 8.4 (Classify is there too, but it is a head)
CHANNEL_MODULES = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "GhostConv",
        "Bottleneck",
        "GhostBottleneck",
        "SPP",
        "SPPF",
        "C2fPSA",
        "C2PSA",
        "DWConv",
        "Focus",
        "BottleneckCSP",
        "C1",
        "C2",
        "C2f",
        "C3k2",
        "RepNCSPELAN4",
        "ELAN1",
        "ADown",
        "AConv",
        "SPPELAN",
        "C2fAttn",
        "C3",
        "C3TR",
        "C3Ghost",
        "nn.ConvTranspose2d",
        "DWConvTranspose2d",
        "C3x",
        "RepC3",
        "PSA",
        "SCDown",
        "C2fCIB",
        "A2C2f",
    }
)
HEADS = frozenset(
    {
        "Detect",
        "Segment",
        "Pose",
        "OBB",
        "Classify",
        "WorldDetect",
        "YOLOEDetect",
        "YOLOESegment",
        "v10Detect",
        "RTDETRDecoder",
        "Depth",
        "SemanticSegment",
        "Segment26",
        "Pose26",
        "OBB26",
        "YOLOESegment26",
    }
)
PASSTHROUGH = frozenset({"nn.Upsample", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.Identity", "Silence"})
_NOT_A_CHANNEL_COUNT = "its first argument is not an output channel count"
NOT_REPLACEABLE = {
    **{head: "it is a head of the model, not a feature map" for head in HEADS},
    "Concat": "it joins several inputs; {op} takes one",
    "nn.Upsample": _NOT_A_CHANNEL_COUNT,
    "nn.MaxPool2d": _NOT_A_CHANNEL_COUNT,
    "nn.ZeroPad2d": _NOT_A_CHANNEL_COUNT,
    "nn.BatchNorm2d": _NOT_A_CHANNEL_COUNT,
    "nn.Identity": "it has no output channel argument",
    "Silence": "it has no output channel argument",
    "AIFI": "its first argument is its hidden width, not an output channel count",
    "HGStem": "its arguments are not scaled like Conv's (parse_model passes them as written)",
    "HGBlock": "its arguments are not scaled like Conv's (parse_model passes them as written)",
    "ResNetLayer": "its first argument is its input channels",
    "CBLinear": "its output is a list of feature maps",
    "CBFuse": "it fuses several inputs; {op} takes one",
    "Index": "it picks one output of a list",
    "TorchVision": "it wraps a torchvision model whose arguments are not scaled like Conv's",
    "ImagePoolingAttn": "its output is a text embedding, not a feature map",
    "Focus": "its space-to-depth step is not a convolution",
    "nn.ConvTranspose2d": "it upsamples; {op} cannot",
    "ConvTranspose": "it upsamples; {op} cannot",
    "DWConvTranspose2d": "it upsamples; {op} cannot",
}


def _first(args: Sequence[Any]) -> int | None:
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None


def _resnet_channels(args: Sequence[Any]) -> int | None:
    if len(args) < 4 or not isinstance(args[1], int):
        return None
    return args[1] if args[3] else args[1] * 4  # the first layer is a stem; others expand 4x


def _resnet_stride(args: Sequence[Any]) -> Fraction | None:
    if len(args) < 4 or not isinstance(args[2], int):
        return None
    return Fraction(4) if args[3] else Fraction(args[2])  # the stem is a stride-2 conv and a stride-2 pool


# --into: yaml args [c2, shortcut, g, e] (C2f, C3); C3k2's [c2, c3k, e], c3k set by parse_model at m, l, x
CSP = {
    "C2f": CspBlock("C2f", e_at=3),
    "C3k2": CspBlock("C3k2", e_at=2, c3k_scales=frozenset({"m", "l", "x"}), c3k_at=1, inner_e=0.5),
    "C3": CspBlock("C3", e_at=3),
}

RULES = Rules(
    family="ultralytics",
    channel_modules=CHANNEL_MODULES,
    strided=frozenset({"Conv", "GhostConv", "DWConv", "SCDown", "GhostBottleneck", "nn.Conv2d"}),
    upsampling=frozenset({"ConvTranspose", "nn.ConvTranspose2d", "DWConvTranspose2d"}),
    heads=HEADS,
    passthrough=PASSTHROUGH,
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "ADown": lambda args: Fraction(2),
        "AConv": lambda args: Fraction(2),
        "HGStem": lambda args: Fraction(4),
        "Focus": lambda args: Fraction(2),
        "ResNetLayer": _resnet_stride,
        "TorchVision": lambda args: None,
        "Index": lambda args: None,
    },
    special={
        # parse_model passes these arguments as written: no width scaling, no max_channels clamp
        "HGStem": lambda args, c_in, previous: args[1] if len(args) > 1 else None,
        "HGBlock": lambda args, c_in, previous: args[1] if len(args) > 1 else None,
        "ResNetLayer": lambda args, c_in, previous: _resnet_channels(args),
        "Index": lambda args, c_in, previous: _first(args),
        "TorchVision": lambda args, c_in, previous: _first(args),
        "CBFuse": lambda args, c_in, previous: c_in[-1],
        "CBLinear": lambda args, c_in, previous: None,  # a list of maps: only CBFuse reads them
        "ImagePoolingAttn": lambda args, c_in, previous: None,
        # these branches never set c2: parse_model records the previous row's channels again
        "AIFI": lambda args, c_in, previous: previous,
        "nn.BatchNorm2d": lambda args, c_in, previous: previous,
    },
    stride_from_last=frozenset({"CBFuse"}),
    exempt="nc",
    csp=CSP,
)

# The classes ultralytics.nn.modules exports (8.4.190's __all__, a superset of 8.1's): a user's module must
# not take one of these names (ultralytics has its own ADown, CBAM, Attention...).
DEFINED = frozenset(
    "A2C2f AConv ADown AIFI Attention BNContrastiveHead Bottleneck BottleneckCSP C1 C2 C2PSA C2f C2fAttn C2fCIB "
    "C2fPSA C3 C3Ghost C3TR C3k2 C3x CBAM CBFuse CBLinear CIB ChannelAttention Classify Concat ContrastiveHead "
    "Conv Conv2 ConvTranspose DFL DWConv DWConvTranspose2d DeformableTransformerDecoder "
    "DeformableTransformerDecoderLayer Depth Detect ELAN1 Focus GhostBottleneck GhostConv HGBlock HGStem "
    "ImagePoolingAttn Index LRPCHead LayerNorm2d LightConv MLP MLPBlock MSDeformAttn MaxSigmoidAttnBlock OBB "
    "OBB26 PSA Pose Pose26 Proto RTDETRDecoder RepC3 RepConv RepNCSPELAN4 RepVGGDW ResNetLayer SCDown SPP "
    "SPPELAN SPPF Segment Segment26 SemanticSegment SpatialAttention TorchVision TransformerBlock "
    "TransformerEncoderLayer TransformerLayer WorldDetect YOLOEDetect YOLOESegment YOLOESegment26 v10Detect "
    "C3k".split()
)

# How a user's file imports ultralytics' code (its copy then sits inside the package, imports unchanged).
IMPORTS = ImportKind(
    "ultralytics",
    ("ultralytics",),
    "from ultralytics.nn.modules import Conv",
    ("Detect",),  # a user's head subclasses it
    ("ultralytics.nn.modules", "ultralytics.nn.modules.head"),
    "ultralytics: `from ultralytics.nn.modules import Detect`, and keep its cv2/cv3 outputs, or override "
    "forward_head",
)
