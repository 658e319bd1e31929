"""Involution (Li et al., CVPR 2021, https://arxiv.org/abs/2103.06255): spec, parameters and costs.

The cost formulas count what thop counts (2.2.x: a conv its weights per output value, not the
bias; an affine BatchNorm 4 per value; an average pool one add per input and one divide per output value),
plus the aggregation, which is tensor arithmetic that no counter sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.operators.spec import Operator, Option, Values, kernel

DEFAULT_KERNEL, DEFAULT_GROUP_CHANNELS, DEFAULT_REDUCTION = 7, 16, 4


@dataclass(frozen=True)
class InvolutionCost:
    """Multiply-accumulates by part, counted the way thop counts modules."""

    pool: int
    conv1: int
    bn1: int
    conv2: int
    aggregation: int
    projection: int

    @property
    def counted_by_thop(self) -> int:
        """What thop and the targets' model_info see: every part but the aggregation, which is no nn.Module."""
        return self.pool + self.conv1 + self.bn1 + self.conv2 + self.projection

    @property
    def total(self) -> int:
        return self.counted_by_thop + self.aggregation


def output_size(size: int, k: int, s: int) -> int:
    """Conv(k, s)'s output size with 'same' padding: ceil(size / s) for odd k."""
    return (size + 2 * ((k - 1) // 2) - k) // s + 1


def aggregation_macs(c1: int, out_h: int, out_w: int, k: int) -> int:
    """The aggregation's multiply-accumulates: k*k per output value. No nn.Module does them, so thop,
    the targets' summaries and torch's FlopCounterMode all leave them out."""
    return k * k * c1 * out_h * out_w


def involution_params(c1: int, c2: int, k: int = 7, gc: int = 16, r: int = 4) -> int:
    hidden, kernels = c1 // r, k * k * (c1 // gc)
    conv1 = c1 * hidden + 2 * hidden  # conv without bias, BN weight and bias
    conv2 = hidden * kernels + kernels
    projection = c1 * c2 + 2 * c2 if c2 != c1 else 0
    return conv1 + conv2 + projection


def involution_macs(
    c1: int, c2: int, h: int, w: int, k: int = 7, s: int = 1, gc: int = 16, r: int = 4
) -> InvolutionCost:
    hidden, kernels = c1 // r, k * k * (c1 // gc)
    pixels = output_size(h, k, s) * output_size(w, k, s)
    return InvolutionCost(
        pool=c1 * (h * w + pixels) if s > 1 else 0,  # one add per input value, one divide per output
        conv1=c1 * hidden * pixels,
        bn1=4 * hidden * pixels,
        conv2=hidden * kernels * pixels,
        aggregation=aggregation_macs(c1, output_size(h, k, s), output_size(w, k, s), k),
        projection=(c1 * c2 + 4 * c2) * pixels if c2 != c1 else 0,
    )


def _yaml_args(channels: int, stride: int | Fraction, values: Values) -> list[Any]:
    args = [channels, values["k"], stride]
    if (values["gc"], values["r"]) != (DEFAULT_GROUP_CHANNELS, DEFAULT_REDUCTION):
        args += [values["gc"], values["r"]]
    return args


def _channel_problem(c1: int, values: Values) -> str | None:
    """Everything that must change for c1 input channels, in one message."""
    gc, r = values["gc"], values["r"]
    problems = []
    if c1 % gc:
        fits = [d for d in range(1, min(c1, 64) + 1) if c1 % d == 0]
        problems.append(
            f"not divisible by --group-channels {gc} (values that divide {c1}: {', '.join(map(str, fits))})"
        )
    if c1 // r < 1:
        problems.append(f"{c1} // --reduction {r} is 0 (use --reduction {c1} or less)")
    if not problems:
        return None
    return f"its Involution would see {c1} input channels: {'; and '.join(problems)}"


def _uncounted_macs(module: Any, inputs: tuple[Any, ...], output: Any) -> int:
    k = getattr(module, "k", None)  # a checkout's own, foreign Involution may not say its kernel size
    return aggregation_macs(inputs[0].shape[1], output.shape[-2], output.shape[-1], k) if k else 0


def _odd(value: int) -> str | None:
    return None if value >= 1 and value % 2 else "must be odd and at least 1 (3, 5, 7 are usual)"


def _positive(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


INVOLUTION = Operator(
    name="Involution",
    summary="a k x k kernel generated per pixel from the input, shared by groups of channels",
    paper="Li et al., CVPR 2021",
    title="Involution: Inverting the Inherence of Convolution for Visual Recognition",
    url="https://arxiv.org/abs/2103.06255",
    template="involution",
    options=(
        kernel(DEFAULT_KERNEL, "kernel size (odd)", check=_odd),
        Option(
            "gc",
            DEFAULT_GROUP_CHANNELS,
            "--group-channels",
            "channels per group that share a kernel",
            check=_positive,
        ),
        Option(
            "r",
            DEFAULT_REDUCTION,
            "--reduction",
            "reduction ratio of the kernel-generating branch",
            check=_positive,
        ),
    ),
    yaml_args=_yaml_args,
    channel_problem=_channel_problem,
    params=lambda c1, c2, values: involution_params(c1, c2, values["k"], values["gc"], values["r"]),
    params_formula="C·(C//r) + 2·(C//r) + (C//r)·k²·(C//gc) + k²·(C//gc), plus C·C2 + 2·C2 when C2 != C",
    keeps_channels=False,
    strided=True,
    uncounted_macs=_uncounted_macs,
    uncounted_note="their aggregation",
)
