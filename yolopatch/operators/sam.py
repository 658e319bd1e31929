"""YOLOv4's modified spatial attention module, point-wise (Bochkovskiy et al., 2020,
https://arxiv.org/abs/2004.10934, section 3.4 and figure 6)."""

from __future__ import annotations

from yolopatch.operators.spec import Operator, keep_channel_args

SAM = Operator(
    name="SAM",
    summary="point-wise gate from a 1x1 convolution with batch norm and a sigmoid (YOLOv4's modified SAM)",
    paper="Bochkovskiy et al., 2020",
    title="YOLOv4: Optimal Speed and Accuracy of Object Detection",
    url="https://arxiv.org/abs/2004.10934",
    template="sam",
    options=(),
    yaml_args=keep_channel_args(()),
    channel_problem=lambda c1, values: None,
    params=lambda c, _c2, values: c * c + 2 * c,
    params_formula="C·C + 2·C",
    keeps_channels=True,
)
