"""SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks.

Lingxiao Yang, Ru-Yuan Zhang, Lida Li, Xiaohua Xie. ICML 2021, PMLR 139:11863-11874.
Paper: https://proceedings.mlr.press/v139/yang21o.html
Official code: https://github.com/ZjjConan/SimAM (networks/attentions/simam_module.py)
"""

import torch
from torch import nn


class SimAM(nn.Module):
    """SimAM: a parameter-free 3-D gate, one weight per value, from an energy function of the neurons.

    Per channel, with mean mu and n = H * W - 1: d = (x - mu)^2, y = d / (4 * (sum(d) / n + lambda)) + 0.5
    (the inverse of the minimal energy), out = x * sigmoid(y). Values far from their channel's mean get
    larger weights. On a 1x1 map n would be 0; n is then taken as 1 (computed from the input's own size, so
    that traced and ONNX graphs keep it for any input size, with no dtype casts in an fp32 graph): d is 0
    there, so the gate is sigmoid(0.5) either way and no inf or NaN appears. Under fp16/bf16 the statistics
    are computed in fp32. Channels and
    resolution are kept. Paper: https://proceedings.mlr.press/v139/yang21o.html

    Args:
        c1: input channels.
        c2: output channels; must equal c1 (YOLOv5's parse_model passes both).
        e_lambda: the regulariser lambda (> 0: with 0, a channel that is constant would give 0 / 0).
    """

    def __init__(self, c1, c2, e_lambda=1e-4):
        super().__init__()
        if c2 != c1:
            raise ValueError(f"SimAM keeps its channels: c2={c2} must equal c1={c1}")
        if not e_lambda > 0:
            raise ValueError(
                f"SimAM needs e_lambda > 0 (0 divides by zero on a constant channel), got {e_lambda}"
            )
        self.e_lambda = e_lambda

    def extra_repr(self):
        return f"e_lambda={self.e_lambda}"

    def forward(self, x):
        low = x.dtype in (torch.float16, torch.bfloat16)
        t = x.float() if low else x  # fp16 sums of squares overflow
        d = (t - t.mean(dim=(2, 3), keepdim=True)).pow(2)
        # n = H * W - 1, at least 1, as a tensor of t's dtype: graphs keep it for every size without casts
        n = (torch.ones_like(t[:1, :1]).sum(dim=(2, 3), keepdim=True) - 1).clamp(min=1)
        y = d / (4 * (d.sum(dim=(2, 3), keepdim=True) / n + self.e_lambda)) + 0.5
        gate = y.sigmoid()
        return x * (gate.to(x.dtype) if low else gate)
