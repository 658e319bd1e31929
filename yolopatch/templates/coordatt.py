"""Coordinate Attention for Efficient Mobile Network Design.

Qibin Hou, Daquan Zhou, Jiashi Feng. CVPR 2021.
Paper: https://arxiv.org/abs/2103.02907
Official code: https://github.com/houqb/CoordAttention (coordatt.py)
"""

import torch
from torch import nn


class CoordAtt(nn.Module):
    """Coordinate Attention: gates along the height and along the width, each computed with position kept.

    The input is averaged along W (one value per row, C x H x 1) and along H (one per column, C x 1 x W);
    the two strips are concatenated along the spatial axis and share a 1x1 convolution with bias
    (C -> mip = max(8, C // r)), BatchNorm2d and h-swish. Split back, each strip goes through its own 1x1
    convolution with bias (mip -> C) and a sigmoid, giving a_h (C x H x 1) and a_w (C x 1 x W);
    out = x * a_h * a_w. Channels and resolution are kept. Paper: https://arxiv.org/abs/2103.02907

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
        r: reduction ratio of the shared convolution (hidden width max(8, c1 // r)).
    """

    def __init__(self, c1, c2, r=32):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"CoordAtt keeps its channels: c2={c2} must equal c1={c1}")
        if c1 < 1:
            raise ValueError(f"CoordAtt needs at least one channel, got c1={c1}")
        if r < 1:
            raise ValueError(f"CoordAtt needs a reduction ratio r >= 1, got r={r}")
        mip = max(8, c1 // r)
        self.conv1 = nn.Conv2d(c1, mip, 1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()  # x * relu6(x + 3) / 6, the official h_swish
        self.conv_h = nn.Conv2d(mip, c1, 1)
        self.conv_w = nn.Conv2d(mip, c1, 1)

    def forward(self, x):
        h, w = x.shape[-2:]
        x_h = x.mean(dim=3, keepdim=True)  # (N, C, H, 1)
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (N, C, W, 1)
        y = self.act(self.bn1(self.conv1(torch.cat((x_h, x_w), dim=2))))
        y_h, y_w = torch.split(y, [h, w], dim=2)
        a_h = self.conv_h(y_h).sigmoid()  # (N, C, H, 1)
        a_w = self.conv_w(y_w.transpose(2, 3)).sigmoid()  # (N, C, 1, W)
        return x * a_h * a_w
