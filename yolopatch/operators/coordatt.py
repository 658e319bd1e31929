"""Coordinate attention (Hou et al., CVPR 2021, https://arxiv.org/abs/2103.02907)."""

from __future__ import annotations

from yolopatch.operators.spec import Operator, Values, keep_channel_args, reduction

_OPTIONS = (reduction(32, "reduction ratio of the shared 1x1 layer (at least 8 channels)"),)


def _params(c: int, _c2: int, values: Values) -> int:
    mip = max(8, c // values["r"])
    return 3 * c * mip + 3 * mip + 2 * c


CoordAtt = Operator(
    name="CoordAtt",
    summary="gates along height and along width from direction-aware pooled features",
    paper="Hou et al., CVPR 2021",
    title="Coordinate Attention for Efficient Mobile Network Design",
    url="https://arxiv.org/abs/2103.02907",
    template="coordatt",
    options=_OPTIONS,
    yaml_args=keep_channel_args(_OPTIONS),
    channel_problem=lambda c1, values: None,  # mip = max(8, C // r) is never empty
    params=_params,
    params_formula="3·C·mip + 3·mip + 2·C, mip = max(8, C//r)",
    keeps_channels=True,
)
