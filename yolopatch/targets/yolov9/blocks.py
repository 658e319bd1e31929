"""YOLOv9's building blocks, our own implementation for yolopatch's built-in builder.

Each class has the sub-modules, attribute names and parameter shapes of the block of the same name in
WongKinYiu/yolov9 as packaged in `yolo9` 1.0.18 (https://arxiv.org/abs/2402.13616), so state_dict keys,
parameter counts and thop's MACs match the real ones. Only what a forward and backward pass needs is here:
no re-parameterisation, no box decoding. Every activation left at its default is the yaml's `activation:`
(the top of yolopatch.templates.common._ACTIVATION while the builder runs), else SiLU.
"""

from __future__ import annotations

import copy
import math
import weakref

import torch
import torch.nn as nn

from yolopatch.targets.yolov7 import blocks as _v7
from yolopatch.templates.common import _ACTIVATION, _SILU, autopad
from yolopatch.templates.common import Conv as _V5Conv

# YOLOv9 kept these from YOLOv7 as they were; SPPCSPC is built of YOLOv9's Conv.
MP, SP, ReOrg = _v7.MP, _v7.SP, _v7.ReOrg


def _activation(act):
    """True: the model's activation; a module: that module; anything else: none."""
    if act is True:
        return _ACTIVATION[-1] if _ACTIVATION else _SILU
    return act if isinstance(act, nn.Module) else nn.Identity()


class Conv(_V5Conv):
    """YOLOv5's Conv (conv, BatchNorm, activation; fuse() folds the BatchNorm) with a dilation d before act."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, d=1, act=True):
        super().__init__(c1, c2, k, s, p, g, act)
        if d > 1:
            span = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
            self.conv = nn.Conv2d(c1, c2, k, s, autopad(span, p), groups=g, dilation=d, bias=False)


def _avg2(x):
    """The 2x2, stride-1 average pool that AConv and ADown run before downsampling."""
    return nn.functional.avg_pool2d(x, 2, 1, 0, False, True)


class AConv(nn.Module):
    """Downsample by 2: a 2x2 average pool (stride 1), then a 3x3 stride-2 Conv."""

    def __init__(self, c1, c2):
        super().__init__()
        self.cv1 = Conv(c1, c2, 3, 2, 1)

    def forward(self, x):
        return self.cv1(_avg2(x))


class ADown(nn.Module):
    """Downsample by 2 in two halves of the channels: a 3x3 stride-2 Conv, and a max-pool then a 1x1 Conv."""

    def __init__(self, c1, c2):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1 // 2, self.c, 3, 2, 1)
        self.cv2 = Conv(c1 // 2, self.c, 1, 1, 0)

    def forward(self, x):
        a, b = _avg2(x).chunk(2, 1)
        return torch.cat((self.cv1(a), self.cv2(nn.functional.max_pool2d(b, 3, 2, 1))), 1)


# YOLOv9 keeps RepConvN's default activation apart from Conv's (RepConvN.default_act): the same kind of
# activation, one more module in the model's count. One copy per model activation, shared like YOLOv9's.
_REPCONVN_ACTIVATION: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


class RepConvN(nn.Module):
    """Training form of a re-parameterisable conv: 3x3 and 1x1 Conv branches (no activation) summed, then act."""

    def __init__(self, c1, c2, k=3, s=1, p=1, g=1, act=True):
        super().__init__()
        shared = _activation(act)
        self.act = _REPCONVN_ACTIVATION.setdefault(shared, copy.deepcopy(shared)) if act is True else shared
        self.conv1 = Conv(c1, c2, k, s, p=p, g=g, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=p - k // 2, g=g, act=False)

    def forward(self, x):
        return self.act(self.conv1(x) + self.conv2(x))


class RepNBottleneck(nn.Module):
    """RepConvN then Conv, with a residual when the widths allow it."""

    def __init__(self, c1, c2, shortcut=True, g=1, k=(3, 3), e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = RepConvN(c1, hidden, k[0], 1)
        self.cv2 = Conv(hidden, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class RepNCSP(nn.Module):
    """C3-style CSP block whose bottlenecks are RepNBottlenecks."""

    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        hidden = int(c2 * e)
        self.cv1 = Conv(c1, hidden, 1, 1)
        self.cv2 = Conv(c1, hidden, 1, 1)
        self.cv3 = Conv(2 * hidden, c2, 1)
        self.m = nn.Sequential(*(RepNBottleneck(hidden, hidden, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class _ELAN(nn.Module):
    """cv1 to c3 channels split in two halves; cv2 and cv3 chained on the second; cv4 merges all four."""

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.append(self.cv2(y[-1]))
        y.append(self.cv3(y[-1]))
        return self.cv4(torch.cat(y, 1))


class ELAN1(_ELAN):
    """ELAN with two 3x3 Convs of width c4."""

    def __init__(self, c1, c2, c3, c4):
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = Conv(c3 // 2, c4, 3, 1)
        self.cv3 = Conv(c4, c4, 3, 1)
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)


class RepNCSPELAN4(_ELAN):
    """GELAN block: ELAN whose two stages are RepNCSP (c5 bottlenecks) then a 3x3 Conv, all of width c4."""

    def __init__(self, c1, c2, c3, c4, c5=1):
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2 = nn.Sequential(RepNCSP(c3 // 2, c4, c5), Conv(c4, c4, 3, 1))
        self.cv3 = nn.Sequential(RepNCSP(c4, c4, c5), Conv(c4, c4, 3, 1))
        self.cv4 = Conv(c3 + 2 * c4, c2, 1, 1)


class SPPELAN(nn.Module):
    """A 1x1 Conv to c3, three chained 5x5 max-pools, and a 1x1 Conv of the four to c2."""

    def __init__(self, c1, c2, c3):
        super().__init__()
        self.cv1 = Conv(c1, c3, 1, 1)
        self.cv2, self.cv3, self.cv4 = SP(5), SP(5), SP(5)
        self.cv5 = Conv(4 * c3, c2, 1, 1)

    def forward(self, x):
        y = [self.cv1(x)]
        for pool in (self.cv2, self.cv3, self.cv4):
            y.append(pool(y[-1]))
        return self.cv5(torch.cat(y, 1))


class SPPCSPC(_v7.SPPCSPC):
    """YOLOv7's CSP spatial pyramid pooling, of YOLOv9's Conv; n is unused, as in YOLOv9."""

    conv = Conv


class Silence(nn.Module):
    """Identity; YOLOv9 puts it at row 0 so that later rows can read the image as layer 0."""

    def forward(self, x):
        return x


class CBLinear(nn.Module):
    """One conv (with bias) to sum(c2s) channels, returned as a tuple of pieces of widths c2s."""

    def __init__(self, c1, c2s, k=1, s=1, p=None, g=1):
        super().__init__()
        self.c2s = c2s
        self.conv = nn.Conv2d(c1, sum(c2s), k, s, autopad(k, p), groups=g, bias=True)

    def forward(self, x):
        return self.conv(x).split(self.c2s, dim=1)


class CBFuse(nn.Module):
    """Sum of the last input and piece idx[i] of each CBLinear input i, resized (nearest) to the last's size."""

    def __init__(self, idx):
        super().__init__()
        self.idx = idx

    def forward(self, xs):
        size = xs[-1].shape[2:]
        pieces = [
            nn.functional.interpolate(x[i], size=size, mode="nearest")
            for i, x in zip(self.idx, xs[:-1], strict=False)
        ]
        return torch.stack([*pieces, xs[-1]]).sum(0)


class DFL(nn.Module):
    """Distribution focal loss integral: the expected bin of each box side, as a fixed (untrained) 1x1 conv."""

    def __init__(self, c1=17):
        super().__init__()
        self.c1 = c1
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1))

    def forward(self, x):
        b, _, a = x.shape
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


class _DFLHead(nn.Module):
    """Anchor-free head of `branches` branches, each nl levels (ch holds branch after branch). Per level a box
    tower (cv2, cv4, cv6: two 3x3 Convs, then a 1x1 conv to 4 * reg_max) and a class tower (cv3, cv5, cv7),
    concatenated; one DFL per branch (dfl, dfl2, dfl3). `groups` is the box tower's second and last convs'.

    forward returns the training output in train and eval mode alike: one branch, a list of nl tensors
    (B, nc + 4 * reg_max, H, W); several, a list of such lists. Boxes are never decoded (the builder only
    measures), so `stride` (set by the builder) is not read. In eval mode each branch's DFL still runs on its
    box distributions, result unused, because thop (which profiles in eval mode) counts that conv in YOLOv9's
    decode: without it the head's MACs would fall short by 64 per anchor and branch.
    """

    branches = 1
    groups = 4
    _DFL_NAMES = ("dfl", "dfl2", "dfl3")

    def __init__(self, nc=80, ch=(), inplace=True):
        super().__init__()
        self.nc, self.reg_max, self.inplace = nc, 16, inplace
        self.nl = len(ch) // self.branches
        self.no = nc + 4 * self.reg_max
        self.stride = torch.zeros(self.nl)
        g = self.groups
        for b in range(self.branches):
            levels = ch[b * self.nl : (b + 1) * self.nl]
            c_box = math.ceil(max(levels[0] // 4, 4 * self.reg_max, 16) / g) * g
            c_cls = max(levels[0], min(nc * 2, 128))
            box = (
                nn.Sequential(
                    Conv(x, c_box, 3),
                    Conv(c_box, c_box, 3, g=g),
                    nn.Conv2d(c_box, 4 * self.reg_max, 1, groups=g),
                )
                for x in levels
            )
            cls = (
                nn.Sequential(Conv(x, c_cls, 3), Conv(c_cls, c_cls, 3), nn.Conv2d(c_cls, nc, 1))
                for x in levels
            )
            setattr(self, f"cv{2 * b + 2}", nn.ModuleList(box))
            setattr(self, f"cv{2 * b + 3}", nn.ModuleList(cls))
        for b in range(self.branches):
            setattr(self, self._DFL_NAMES[b], DFL(self.reg_max))

    def forward(self, x):
        out = []
        for b in range(self.branches):
            towers = zip(getattr(self, f"cv{2 * b + 2}"), getattr(self, f"cv{2 * b + 3}"), strict=True)
            inputs = x[b * self.nl : (b + 1) * self.nl]
            out.append(
                [torch.cat((box(xi), cls(xi)), 1) for (box, cls), xi in zip(towers, inputs, strict=True)]
            )
        if not self.training:
            for name, levels in zip(self._DFL_NAMES, out, strict=False):
                dist = torch.cat([y.flatten(2) for y in levels], 2)[:, : 4 * self.reg_max]
                getattr(self, name)(dist)
        return out[0] if self.branches == 1 else out


class Detect(_DFLHead):
    """YOLOv9's anchor-free Detect (yolov7-af.yaml): one branch, no grouped convs."""

    groups = 1


class DDetect(_DFLHead):
    """One branch, the box tower's second and last convs in 4 groups."""


class DualDDetect(_DFLHead):
    """DDetect's towers twice: the main branch (ch[:nl]) and the auxiliary one (ch[nl:])."""

    branches = 2


class TripleDDetect(_DFLHead):
    """DDetect's towers three times, over ch[:nl], ch[nl:2nl] and ch[2nl:]."""

    branches = 3


BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        Conv,
        AConv,
        ADown,
        ELAN1,
        RepNCSPELAN4,
        SPPELAN,
        CBLinear,
        CBFuse,
        Silence,
        MP,
        SP,
        SPPCSPC,
        ReOrg,
        Detect,
        DDetect,
        DualDDetect,
        TripleDDetect,
    )
}
