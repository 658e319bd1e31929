"""The blocks every family and every template builds on: Conv (conv, BatchNorm, the shared activation),
its fusion, Concat.

The templates import this Conv when yolopatch builds them; `inject` pastes them beside the target's own.
"""

from __future__ import annotations

import torch
from torch import nn


def autopad(k: int | tuple[int, int], p: int | None = None) -> int | list[int]:
    """'same' padding for odd kernels."""
    if p is not None:
        return p
    return k // 2 if isinstance(k, int) else [x // 2 for x in k]


class Conv(nn.Module):
    """Conv2d without bias, BatchNorm, activation (SiLU unless the yaml's `activation:` says otherwise)."""

    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        if act is True:
            self.act = _ACTIVATION[-1] if _ACTIVATION else _SILU
        else:
            self.act = act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x):
        return self.act(self.conv(x))

    def fuse(self):
        """Fold the BatchNorm into the convolution and drop it, as the families' Model.fuse() does."""
        if hasattr(self, "bn"):
            self.conv = fuse_conv_and_bn(self.conv, self.bn)
            del self.bn
            self.forward = self.forward_fuse
        return self


def fuse_conv_and_bn(conv, bn):
    """The convolution that computes bn(conv(x)) in inference: scaled weights and a bias."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
    ).requires_grad_(False)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


# One activation instance shared by every Conv, as the families do (it counts once in model.modules()).
# The builder pushes the yaml's `activation:` for one build only; the families set a class attribute that leaks.
_SILU = nn.SiLU()
_ACTIVATION: list[nn.Module] = []


class Concat(nn.Module):
    def __init__(self, dimension=1):
        super().__init__()
        self.d = dimension

    def forward(self, x):
        return torch.cat(x, self.d)
