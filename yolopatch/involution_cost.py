"""Involution's parameter count and multiply-accumulates, as formulas (no torch needed)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class InvolutionCost:
    """Multiply-accumulates by part, counted the way ultralytics-thop counts modules.

    Its rules (2.2.x): a conv counts its weights per output value, not the bias; an affine BatchNorm 4 per
    value; an average pool one add per input and one divide per output value.
    """

    pool: int
    conv1: int
    bn1: int
    conv2: int
    aggregation: int
    projection: int

    @property
    def counted_by_thop(self) -> int:
        """What thop and YOLOv5's model_info see: every part but the aggregation, which is no nn.Module."""
        return self.pool + self.conv1 + self.bn1 + self.conv2 + self.projection

    @property
    def total(self) -> int:
        return self.counted_by_thop + self.aggregation


def output_size(size: int, k: int, s: int) -> int:
    """Conv(k, s)'s output size with 'same' padding: ceil(size / s) for odd k."""
    return (size + 2 * ((k - 1) // 2) - k) // s + 1


def aggregation_macs(c1: int, out_h: int, out_w: int, k: int) -> int:
    """The aggregation's multiply-accumulates: k*k per output value. No nn.Module does them, so thop,
    YOLOv5's summary and torch's FlopCounterMode all leave them out."""
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
