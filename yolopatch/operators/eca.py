"""ECA, Efficient Channel Attention (Wang et al., CVPR 2020, https://arxiv.org/abs/1910.03151)."""

from __future__ import annotations

import math

from yolopatch.operators.spec import Operator, Values, keep_channel_args, kernel


def adaptive_kernel(c: int) -> int:
    """The paper's kernel size for C channels (gamma 2, b 1): the odd number nearest (log2(C) + 1) / 2."""
    t = int(abs((math.log2(c) + 1) / 2))
    return t if t % 2 else t + 1


def _kernel(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def _params(c: int, _c2: int, values: Values) -> int:
    return values["k"] or adaptive_kernel(c)


_OPTIONS = (kernel(None, "1-D kernel size (odd; None: adaptive)", parse=_kernel),)

ECA = Operator(
    name="ECA",
    summary="channel gate from a 1-D convolution across the globally pooled channels",
    paper="Wang et al., CVPR 2020",
    title="ECA-Net: Efficient Channel Attention for Deep Convolutional Neural Networks",
    url="https://arxiv.org/abs/1910.03151",
    template="eca",
    options=_OPTIONS,
    yaml_args=keep_channel_args(_OPTIONS),
    channel_problem=lambda c1, values: None,
    params=_params,
    params_formula="k (adaptive: the odd number nearest (log2(C) + 1) / 2)",
    keeps_channels=True,
)
