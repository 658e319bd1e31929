"""A fusion module as the "YOLO improvement" posts write them: a BiFPN node that adds its inputs with learned,
normalised weights (Tan et al., EfficientDet, CVPR 2020, https://arxiv.org/abs/1911.09070). Its forward takes
one list of maps, as a yaml row with a `from` list feeds it: `yolopatch ops add` learns it as a fusion class."""

import torch
import torch.nn as nn


class BiFPNAdd(nn.Module):
    """Fast normalised fusion of same-width, same-size inputs, then a 1x1 conv to c2 channels."""

    def __init__(self, c1, c2, eps=1e-4):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.eps = eps
        self.conv = nn.Sequential(nn.Conv2d(c1, c2, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU())

    def forward(self, x):
        w = torch.relu(self.w[: len(x)])
        w = w / (w.sum() + self.eps)
        return self.conv(sum(wi * xi for wi, xi in zip(w, x, strict=False)))


class BiFPNConcat(nn.Module):
    """The weighted Concat the YOLOv8 "BiFPN" posts use: normalised learned weights, then concatenation."""

    def __init__(self, dimension=1, eps=1e-4):
        super().__init__()
        self.d = dimension
        self.w = nn.Parameter(torch.ones(3))
        self.eps = eps

    def forward(self, x):
        w = torch.relu(self.w[: len(x)])
        w = w / (w.sum() + self.eps)
        return torch.cat([wi * xi for wi, xi in zip(w, x, strict=False)], self.d)
