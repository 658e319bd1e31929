"""Squeeze-and-Excitation (Hu et al., CVPR 2018, https://arxiv.org/abs/1709.01507)."""

from __future__ import annotations

from yolopatch.operators.spec import Operator, hidden_channels_problem, keep_channel_args, reduction

_OPTIONS = (reduction(16),)

SE = Operator(
    name="SE",
    summary="channel gate from global average pooling through a bottleneck of two 1x1 convolutions",
    paper="Hu et al., CVPR 2018",
    title="Squeeze-and-Excitation Networks",
    url="https://arxiv.org/abs/1709.01507",
    template="se",
    options=_OPTIONS,
    yaml_args=keep_channel_args(_OPTIONS),
    channel_problem=hidden_channels_problem("SE"),
    params=lambda c, _c2, v: 2 * c * (c // v["r"]) + c // v["r"] + c,
    params_formula="2·C·(C//r) + C//r + C",
    keeps_channels=True,
)
