"""CBAM, the Convolutional Block Attention Module (Woo et al., ECCV 2018, https://arxiv.org/abs/1807.06521)."""

from __future__ import annotations

from yolopatch.operators.spec import (
    Operator,
    hidden_channels_problem,
    keep_channel_args,
    kernel,
    reduction,
)

_OPTIONS = (reduction(16), kernel(7, "spatial gate kernel size (odd)"))

CBAM = Operator(
    name="CBAM",
    summary="channel gate (shared MLP on average- and max-pooled vectors), then a k x k spatial gate",
    paper="Woo et al., ECCV 2018",
    title="CBAM: Convolutional Block Attention Module",
    url="https://arxiv.org/abs/1807.06521",
    template="cbam",
    options=_OPTIONS,
    yaml_args=keep_channel_args(_OPTIONS),
    channel_problem=hidden_channels_problem("CBAM"),
    params=lambda c, _c2, v: 2 * c * (c // v["r"]) + c // v["r"] + c + 2 * v["k"] * v["k"] + 2,
    params_formula="2·C·(C//r) + C//r + C + 2·k·k + 2",
    keeps_channels=True,
)
