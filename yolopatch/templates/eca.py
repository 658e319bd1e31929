"""ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks.

Qilong Wang, Banggu Wu, Pengfei Zhu, Peihua Li, Wangmeng Zuo, Qinghua Hu. CVPR 2020.
Paper: https://arxiv.org/abs/1910.03151
Official code: https://github.com/BangguWu/ECANet (models/eca_module.py)
"""

import math

from torch import nn


class ECA(nn.Module):
    """Efficient Channel Attention: a channel gate from a 1-D convolution across neighbouring channels.

    Each channel is averaged over H x W; a 1-D convolution with k taps and no bias (zero padding
    (k - 1) // 2) runs along the channel axis of that vector, so each gate sees its k neighbouring
    channels; a sigmoid gives one weight per channel that scales the input. With k=None the paper's
    adaptive size is used: t = int(|(log2(C) + 1) / 2|), k = t if t is odd else t + 1 (gamma=2, b=1).
    Channels and resolution are kept. Paper: https://arxiv.org/abs/1910.03151

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
        k: odd kernel size of the 1-D convolution, or None for the adaptive size.
    """

    def __init__(self, c1, c2, k=None):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"ECA keeps its channels: c2={c2} must equal c1={c1}")
        if c1 < 1:
            raise ValueError(f"ECA needs at least one channel, got c1={c1}")
        if k is None:
            t = int(abs((math.log2(c1) + 1) / 2))
            k = t if t % 2 else t + 1
        if k < 1 or k % 2 == 0:
            raise ValueError(f"ECA needs an odd kernel size k >= 1 (or None), got k={k}")
        self.conv = nn.Conv1d(1, 1, k, padding=(k - 1) // 2, bias=False)

    def forward(self, x):
        y = self.conv(x.mean(dim=(2, 3)).unsqueeze(1))  # (N, 1, C): channels are the 1-D axis
        return x * y.sigmoid().transpose(-1, -2).unsqueeze(-1)
