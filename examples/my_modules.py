"""A module of your own, as the improvement posts write them: `channel` first, with a default (our example).

Learn it with `yolopatch ops add examples/my_modules.py:ChannelGate`.
"""

import torch.nn as nn


class ChannelGate(nn.Module):
    """A squeeze-and-excitation style gate: pooled channels through a 1x1 bottleneck of channel // reduction."""

    def __init__(self, channel=512, reduction=16):
        super().__init__()
        hidden = channel // reduction
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channel, hidden, 1),
            nn.SiLU(),
            nn.Conv2d(hidden, channel, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.gate(x)
