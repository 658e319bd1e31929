"""CBAM: Convolutional Block Attention Module.

Sanghyun Woo, Jongchan Park, Joon-Young Lee, In So Kweon. ECCV 2018.
Paper: https://arxiv.org/abs/1807.06521
Official code: https://github.com/Jongchan/attention-module (MODELS/cbam.py)
"""

import torch
from torch import nn


class CBAM(nn.Module):
    """Convolutional Block Attention Module: a channel gate followed by a spatial gate.

    Channel gate: one shared MLP with biases (C -> C // r, ReLU, C // r -> C) maps the per-channel average
    and the per-channel maximum over H x W; the two results are summed, passed through a sigmoid and scale
    the input. Spatial gate: the maximum and the mean over channels at each pixel (concatenated in that
    order, as the official code does) go through a k x k convolution without bias (2 -> 1), BatchNorm2d (eps
    and momentum of the official code) and a sigmoid, and scale the channel-gated features. Channels and
    resolution are kept. Paper: https://arxiv.org/abs/1807.06521

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
        r: reduction ratio of the channel MLP (hidden width c1 // r, at least 1).
        k: odd kernel size of the spatial convolution.
    """

    def __init__(self, c1, c2, r=16, k=7):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"CBAM keeps its channels: c2={c2} must equal c1={c1}")
        if r < 1:
            raise ValueError(f"CBAM needs a reduction ratio r >= 1, got r={r}")
        c_ = c1 // r
        if c_ < 1:
            raise ValueError(f"CBAM: c1 // r = {c1} // {r} leaves {c_} hidden channels, needs >= 1")
        if k < 1 or k % 2 == 0:
            raise ValueError(f"CBAM needs an odd spatial kernel size k >= 1, got k={k}")
        self.mlp = nn.Sequential(nn.Linear(c1, c_), nn.ReLU(inplace=True), nn.Linear(c_, c1))
        self.spatial = nn.Sequential(
            nn.Conv2d(2, 1, k, padding=(k - 1) // 2, bias=False),
            nn.BatchNorm2d(1, eps=1e-5, momentum=0.01),
            nn.Sigmoid(),
        )

    def forward(self, x):
        gate = self.mlp(x.mean(dim=(2, 3))) + self.mlp(x.amax(dim=(2, 3)))
        x = x * gate.sigmoid().unsqueeze(-1).unsqueeze(-1)
        pooled = torch.cat((x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)), dim=1)
        return x * self.spatial(pooled)
