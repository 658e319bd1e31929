"""A backbone of our own, for yolopatch's examples: its forward returns a list of maps (strides 8, 16, 32),
and it states their widths in `width_list`, as the forks' MobileNet and FasterNet ports do."""

from torch import nn


def _down(c1, c2):
    """A stride-2 3x3 conv, BatchNorm, SiLU."""
    return nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.SiLU())


class TinyNet(nn.Module):
    """Five stride-2 stages; the last three give the P3, P4 and P5 maps."""

    def __init__(self, width=16):
        super().__init__()
        self.stem = nn.Sequential(_down(3, width), _down(width, 2 * width))
        self.stages = nn.ModuleList(
            [_down(2 * width, 4 * width), _down(4 * width, 8 * width), _down(8 * width, 16 * width)]
        )
        self.width_list = [4 * width, 8 * width, 16 * width]

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs
