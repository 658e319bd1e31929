"""Squeeze-and-Excitation Networks.

Jie Hu, Li Shen, Samuel Albanie, Gang Sun, Enhua Wu. CVPR 2018 (extended version in TPAMI 2020).
Paper: https://arxiv.org/abs/1709.01507
Official code (Caffe): https://github.com/hujie-frank/SENet
PyTorch port that loads the official weights: https://github.com/Cadene/pretrained-models.pytorch
(pretrainedmodels/models/senet.py, SEModule).
"""

from torch import nn


class SE(nn.Module):
    """Squeeze-and-Excitation: reweights channels by a gate computed from their global averages.

    Squeeze: average each channel over H x W. Excite: a bottleneck of two 1x1 convolutions with biases
    (C -> C // r, ReLU, C // r -> C) and a sigmoid give one weight in (0, 1) per channel; the input is scaled
    by it. Channels and resolution are kept. Paper: https://arxiv.org/abs/1709.01507

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
        r: reduction ratio of the bottleneck (hidden width c1 // r, at least 1).
    """

    def __init__(self, c1, c2, r=16):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"SE keeps its channels: c2={c2} must equal c1={c1}")
        if r < 1:
            raise ValueError(f"SE needs a reduction ratio r >= 1, got r={r}")
        c_ = c1 // r
        if c_ < 1:
            raise ValueError(f"SE: c1 // r = {c1} // {r} leaves {c_} hidden channels, needs >= 1")
        self.fc = nn.Sequential(
            nn.Conv2d(c1, c_, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_, c1, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.fc(x.mean(dim=(2, 3), keepdim=True))
