"""YOLOv4: Optimal Speed and Accuracy of Object Detection, the modified SAM.

Alexey Bochkovskiy, Chien-Yao Wang, Hong-Yuan Mark Liao. 2020. Paper: https://arxiv.org/abs/2004.10934
(section 3.4, figure 6: "we modify SAM from spatial-wise attention to point-wise attention").
darknet's own form: a 1x1 [convolutional] with batch_normalize=1 and activation=logistic, then
[sam] from=-2, which multiplies the gate into the input (AlexeyAB/darknet, src/sam_layer.c).
"""

from torch import nn


class SAM(nn.Module):
    """YOLOv4's point-wise spatial attention: out = x * sigmoid(BN(conv1x1(x))).

    One gate value per position and channel, from a 1x1 convolution without bias (its batch norm has the
    bias) over the input. Channels and resolution are kept.
    Paper: https://arxiv.org/abs/2004.10934

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
    """

    def __init__(self, c1, c2):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"SAM keeps its channels: c2={c2} must equal c1={c1}")
        self.conv = nn.Conv2d(c1, c1, 1, bias=False)
        self.bn = nn.BatchNorm2d(c1)

    def forward(self, x):
        return x * self.bn(self.conv(x)).sigmoid()
