"""YOLOv7's building blocks, our own implementation for yolopatch's built-in builder.

Each class has the sub-modules, attribute names and parameter shapes of the block of the same name in
WongKinYiu/yolov7 as packaged in `yolov7detect` 1.0.1 (https://arxiv.org/abs/2207.02696), so state_dict
keys, parameter counts and thop's MACs match the real ones. Only what a forward and backward pass needs is
here: no re-parameterisation, no box decoding. Bottleneck, SPP, SPPF and Focus are YOLOv5's, which YOLOv7
shares layer for layer; so is Conv, except that YOLOv7 gives each Conv an activation instance of its own.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from yolopatch.targets.yolov5.blocks import SPP, SPPF, Bottleneck, Focus
from yolopatch.templates.common import Conv as _V5Conv
from yolopatch.templates.common import autopad


class Conv(_V5Conv):
    """YOLOv5's Conv with a SiLU of its own per instance, as YOLOv7 builds it (one module more in the
    model's count for each Conv; YOLOv7's yamls have no `activation:`)."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__(c1, c2, k, s, p, g, nn.SiLU() if act is True else act)


class MP(nn.Module):
    """Max-pool of size and stride k."""

    def __init__(self, k=2):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x):
        return self.m(x)


class SP(nn.Module):
    """Max-pool of size k, stride s, 'same' padding."""

    def __init__(self, k=3, s=1):
        super().__init__()
        self.m = nn.MaxPool2d(kernel_size=k, stride=s, padding=k // 2)

    def forward(self, x):
        return self.m(x)


class ReOrg(nn.Module):
    """Space to depth: each 2x2 patch into channels, (b, c, h, w) -> (b, 4c, h/2, w/2)."""

    def forward(self, x):
        return torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)


class Shortcut(nn.Module):
    """Sum of the first two inputs (the yaml's dimension is kept but not used, as in YOLOv7)."""

    def __init__(self, dimension=0):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return x[0] + x[1]


class DownC(nn.Module):
    """Downsample by k in two halves of c2: a 1x1 then a 3x3 stride-k Conv, and a max-pool then a 1x1 Conv.

    n (inserted by parse_model) is unused, as in YOLOv7.
    """

    def __init__(self, c1, c2, n=1, k=2):
        super().__init__()
        self.cv1 = Conv(c1, c1, 1, 1)
        self.cv2 = Conv(c1, c2 // 2, 3, k)
        self.cv3 = Conv(c1, c2 // 2, 1, 1)
        self.mp = nn.MaxPool2d(kernel_size=k, stride=k)

    def forward(self, x):
        return torch.cat((self.cv2(self.cv1(x)), self.cv3(self.mp(x))), 1)


class SPPCSPC(nn.Module):
    """CSP spatial pyramid pooling: parallel k max-pools on one branch, a 1x1 Conv on the other; n is unused."""

    conv: type[nn.Module] = Conv  # the family's Conv (YOLOv9's subclass sets its own)

    def __init__(self, c1, c2, n=1, shortcut=False, g=1, e=0.5, k=(5, 9, 13)):
        super().__init__()
        hidden, conv = int(2 * c2 * e), self.conv
        self.cv1 = conv(c1, hidden, 1, 1)
        self.cv2 = conv(c1, hidden, 1, 1)
        self.cv3 = conv(hidden, hidden, 3, 1)
        self.cv4 = conv(hidden, hidden, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)
        self.cv5 = conv(4 * hidden, hidden, 1, 1)
        self.cv6 = conv(hidden, hidden, 3, 1)
        self.cv7 = conv(2 * hidden, c2, 1, 1)

    def forward(self, x):
        y = self.cv4(self.cv3(self.cv1(x)))
        y = self.cv6(self.cv5(torch.cat([y] + [pool(y) for pool in self.m], 1)))
        return self.cv7(torch.cat((y, self.cv2(x)), 1))


class RepConv(nn.Module):
    """RepVGG-style 3x3 conv in its training form: a 3x3 conv+BN, a 1x1 conv+BN and, when c1 == c2 and
    s == 1, a BN of the input, summed, then act. deploy=True builds the single fused conv (rbr_reparam).
    """

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, act=True, deploy=False):
        super().__init__()
        if k != 3 or autopad(k, p) != 1:
            raise ValueError(f"RepConv needs k=3 and padding 1, got k={k}, p={p}")
        self.deploy, self.groups, self.in_channels, self.out_channels = deploy, g, c1, c2
        self.act = nn.SiLU() if act is True else (act if isinstance(act, nn.Module) else nn.Identity())
        if deploy:
            self.rbr_reparam = nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=True)
        else:
            self.rbr_identity = nn.BatchNorm2d(c1) if c1 == c2 and s == 1 else None
            self.rbr_dense = nn.Sequential(
                nn.Conv2d(c1, c2, 3, s, 1, groups=g, bias=False), nn.BatchNorm2d(c2)
            )
            self.rbr_1x1 = nn.Sequential(nn.Conv2d(c1, c2, 1, s, 0, groups=g, bias=False), nn.BatchNorm2d(c2))

    def forward(self, x):
        if self.deploy:
            return self.act(self.rbr_reparam(x))
        y = self.rbr_dense(x) + self.rbr_1x1(x)
        return self.act(y if self.rbr_identity is None else y + self.rbr_identity(x))


class ImplicitA(nn.Module):
    """A learned per-channel offset added to the input (YOLOR's implicit knowledge)."""

    def __init__(self, channel, mean=0.0, std=0.02):
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1).normal_(mean, std))

    def forward(self, x):
        return self.implicit + x


class ImplicitM(nn.Module):
    """A learned per-channel scale multiplying the input (YOLOR's implicit knowledge)."""

    def __init__(self, channel, mean=1.0, std=0.02):
        super().__init__()
        self.channel, self.mean, self.std = channel, mean, std
        self.implicit = nn.Parameter(torch.empty(1, channel, 1, 1).normal_(mean, std))

    def forward(self, x):
        return self.implicit * x


class _AnchorHead(nn.Module):
    """What YOLOv7's anchor-based heads share: nc + 5 outputs per anchor, a 1x1 conv (with bias) per entry of
    ch in m, `anchors` (nl, na, 2) and `anchor_grid` (nl, 1, na, 1, 1, 2) buffers, and a
    `stride` tensor attribute that the builder sets. Detect, IDetect and IAuxDetect derive from it, not from
    one another, so that an isinstance test tells them apart as in YOLOv7.

    forward returns the training output in train and eval mode alike, tensors (B, na, H, W, nc + 5): boxes
    are never decoded (the builder only measures).
    """

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__()
        self.nc, self.no = nc, nc + 5
        self.nl, self.na = len(anchors), len(anchors[0]) // 2
        a = torch.tensor(anchors).float().view(self.nl, -1, 2)
        self.register_buffer("anchors", a)
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))
        self.stride = torch.zeros(self.nl)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)

    def _split(self, y):
        """(B, na * no, H, W) -> (B, na, H, W, no)."""
        b, _, h, w = y.shape
        return y.view(b, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous()


class Detect(_AnchorHead):
    """The plain head (deploy yamls): a list of nl tensors."""

    def forward(self, x):
        return [self._split(conv(xi)) for conv, xi in zip(self.m, x, strict=True)]


class IDetect(_AnchorHead):
    """Detect with an ImplicitA before and an ImplicitM after each level's conv."""

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch)
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch)
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch)

    def forward(self, x):
        return [
            self._split(im(conv(ia(xi))))
            for conv, ia, im, xi in zip(self.m, self.ia, self.im, x, strict=True)
        ]


class IAuxDetect(_AnchorHead):
    """IDetect on the lead inputs ch[:nl], plus a plain conv per level (m2) on the auxiliary ones ch[nl:].

    forward returns 2 * nl tensors, the lead levels then the auxiliary ones.
    """

    def __init__(self, nc=80, anchors=(), ch=()):
        super().__init__(nc, anchors, ch[: len(anchors)])
        self.m2 = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[self.nl :])
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch[: self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in range(self.nl))

    def forward(self, x):
        lead = zip(self.m, self.ia, self.im, x[: self.nl], strict=True)
        out = [self._split(im(conv(ia(xi)))) for conv, ia, im, xi in lead]
        return out + [self._split(conv(xi)) for conv, xi in zip(self.m2, x[self.nl :], strict=True)]


BLOCKS: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        Conv,
        RepConv,
        DownC,
        SPPCSPC,
        Bottleneck,
        SPP,
        SPPF,
        Focus,
        MP,
        SP,
        ReOrg,
        Shortcut,
        ImplicitA,
        ImplicitM,
        Detect,
        IDetect,
        IAuxDetect,
    )
}
