"""Involution: Inverting the Inherence of Convolution for Visual Recognition.

Duo Li, Jie Hu, Changhu Wang, Xiangtai Li, Qi She, Lei Zhu, Tong Zhang, Qifeng Chen. CVPR 2021.
Paper: https://arxiv.org/abs/2103.06255
Official code: https://github.com/d-li14/involution

`inject` pastes this file's classes into a YOLOv5 common.py, without the imports (common.py has them and its
own Conv); `check` imports it with yolopatch's Conv.
"""

import torch
import torch.nn as nn

from yolopatch.modules import Conv


class InvolutionAggregate(torch.autograd.Function):
    """Involution's aggregation with a hand-written backward that saves only its two inputs.

    out[b, c, i, j] = sum over (u, v) of w[b, c // gc, u*k + v, i, j] * x[b, c, i*s + u - p, j*s + v - p],
    with p = (k - 1) // 2 and zero padding. It walks the k*k offsets and accumulates shifted slices, so the
    k*k*C*H*W unfolded tensor of the reference implementation never exists, forward or backward.
    Accumulation is in float32 (or float64) even under autocast.
    """

    @staticmethod
    def forward(ctx, x, w, k, s):
        ctx.save_for_backward(x, w)
        ctx.k, ctx.s = k, s
        return InvolutionAggregate.aggregate(x, w, k, s)

    @staticmethod
    def backward(ctx, grad):
        x, w = ctx.saved_tensors
        acc = torch.promote_types(torch.result_type(x, w), torch.float32)
        p = (ctx.k - 1) // 2
        xp = nn.functional.pad(x.to(acc), (p, p, p, p))
        grad = grad.to(acc).view(x.shape[0], w.shape[1], -1, w.shape[3], w.shape[4])
        grad_xp = torch.zeros_like(xp) if ctx.needs_input_grad[0] else None
        grad_w = torch.empty(w.shape, dtype=acc, device=w.device) if ctx.needs_input_grad[1] else None
        for piece, window, offset in InvolutionAggregate.passes(x, w, ctx.k, ctx.s):
            part = grad[piece]
            if grad_xp is not None:
                grad_xp[window].view(part.shape).addcmul_(part, w[offset].unsqueeze(2).to(acc))
            if grad_w is not None:
                grad_w[offset] = (part * xp[window].view(part.shape)).sum(2)
        grad_x = (
            grad_xp[:, :, p : p + x.shape[2], p : p + x.shape[3]].to(x.dtype) if grad_xp is not None else None
        )
        return grad_x, (grad_w.to(w.dtype) if grad_w is not None else None), None, None

    @staticmethod
    def aggregate(x, w, k, s):
        """The aggregation in place, piece by piece (eager forward, with or without autograd)."""
        acc = torch.promote_types(torch.result_type(x, w), torch.float32)
        p = (k - 1) // 2
        xp = nn.functional.pad(x.to(acc), (p, p, p, p))
        out = torch.zeros(
            (x.shape[0], w.shape[1], x.shape[1] // w.shape[1], w.shape[3], w.shape[4]),
            dtype=acc,
            device=x.device,
        )
        for piece, window, offset in InvolutionAggregate.passes(x, w, k, s):
            part = out[piece]
            part.addcmul_(xp[window].view(part.shape), w[offset].unsqueeze(2).to(acc))
        return out.flatten(1, 2).to(torch.result_type(x, w))

    @staticmethod
    def passes(x, w, k, s):
        """Index tuples (piece of out, window of padded x, offset of w) for every pass.

        On a CPU the output is split into pieces (a batch item and a run of groups, about 2**18 values) that
        stay in a core's L2 cache across the k*k passes; on a GPU one piece holds everything.
        """
        b, c = x.shape[:2]
        g, ho, wo = w.shape[1], w.shape[3], w.shape[4]
        gc = c // g
        step = g if x.is_cuda else max(1, (1 << 18) // (gc * ho * wo))
        for batch in [slice(None)] if x.is_cuda else [slice(i, i + 1) for i in range(b)]:
            for first in range(0, g, step):
                groups = slice(first, min(g, first + step))
                channels = slice(groups.start * gc, groups.stop * gc)
                for u in range(k):
                    for v in range(k):
                        rows, cols = slice(u, u + s * (ho - 1) + 1, s), slice(v, v + s * (wo - 1) + 1, s)
                        yield (batch, groups), (batch, channels, rows, cols), (batch, groups, u * k + v)

    @staticmethod
    def shift_sum(x, w, k, s):
        """The same sum as plain tensor ops (Pad, Slice, Mul, Add): what tracing and ONNX export record."""
        acc = torch.promote_types(torch.result_type(x, w), torch.float32)
        p = (k - 1) // 2
        b, c = x.shape[:2]
        g, ho, wo = w.shape[1], w.shape[3], w.shape[4]
        xp = nn.functional.pad(x.to(acc), (p, p, p, p))
        out = torch.zeros((b, g, c // g, ho, wo), dtype=acc, device=x.device)
        for u in range(k):
            for v in range(k):
                shifted = xp[:, :, u : u + s * (ho - 1) + 1 : s, v : v + s * (wo - 1) + 1 : s]
                out = out + shifted.reshape(b, g, c // g, ho, wo) * w[:, :, u * k + v].unsqueeze(2).to(acc)
        return out.flatten(1, 2).to(torch.result_type(x, w))


class Involution(nn.Module):
    """Involution (Li et al., CVPR 2021, https://arxiv.org/abs/2103.06255), for YOLOv5's parse_model.

    A k x k kernel is generated for every pixel from the input itself and shared by each group of `gc`
    channels: the inverse of a convolution, whose kernel is shared over space and differs per channel.
    Kernel generation follows the reference (d-li14/involution): Conv(c1, c1 // r, 1) with BN and
    activation, then a plain 1x1 nn.Conv2d to k*k*(c1 // gc) values, after average pooling when s > 1.
    Over the usual recipe: c2 != c1 adds a 1x1 Conv projection; the output size equals Conv(k, s)'s for
    every input size (odd ones too); bad channel counts raise a ValueError that says what would work.

    Args: c1 input channels, c2 output channels, k kernel size (odd), s stride, gc channels per group,
    r reduction ratio of the kernel-generating branch.
    """

    def __init__(self, c1, c2, k=7, s=1, gc=16, r=4):
        super().__init__()
        if k < 1 or k % 2 == 0 or s < 1:
            raise ValueError(f"Involution: kernel k={k} must be odd and >= 1, stride s={s} >= 1")
        if gc < 1 or c1 % gc:
            fits = [d for d in range(1, min(c1, 64) + 1) if c1 % d == 0]
            raise ValueError(
                f"Involution: c1={c1} input channels are not divisible by gc={gc} channels per group; "
                f"gc values that divide {c1}: {fits}"
            )
        if r < 1 or c1 // r < 1:
            raise ValueError(f"Involution: c1 // r = {c1} // {r} is 0; use r between 1 and {c1}")
        self.k, self.s, self.gc = k, s, gc
        self.pool = nn.AvgPool2d(s, s, ceil_mode=True) if s > 1 else nn.Identity()
        self.conv1 = Conv(c1, c1 // r, 1)
        self.conv2 = nn.Conv2d(c1 // r, k * k * (c1 // gc), 1)
        self.proj = Conv(c1, c2, 1) if c2 != c1 else nn.Identity()

    def forward(self, x):
        w = self.conv2(self.conv1(self.pool(x)))
        b, _, ho, wo = w.shape
        w = w.view(b, -1, self.k * self.k, ho, wo)
        if torch.jit.is_tracing():
            y = InvolutionAggregate.shift_sum(x, w, self.k, self.s)
        elif torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            y = InvolutionAggregate.apply(x, w, self.k, self.s)
        else:
            y = InvolutionAggregate.aggregate(x, w, self.k, self.s)
        return self.proj(y)
