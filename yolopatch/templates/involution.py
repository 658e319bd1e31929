"""Involution: Inverting the Inherence of Convolution for Visual Recognition.

Duo Li, Jie Hu, Changhu Wang, Xiangtai Li, Qi She, Lei Zhu, Tong Zhang, Qifeng Chen. CVPR 2021.
Paper: https://arxiv.org/abs/2103.06255
Official code: https://github.com/d-li14/involution

`inject` pastes this file's classes into a YOLOv5 common.py, without the imports (common.py has them and its
own Conv); `check` imports it with yolopatch's Conv.
"""

import torch
import torch.nn as nn

from yolopatch.templates.common import Conv


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
    def unfold_sum(x, w, k: int, s: int):
        """The same sum for graphs (ONNX export, torch.export, torch.jit.script/trace, torch.compile): one
        convolution of every channel with a fixed one-hot k x k -> k*k kernel gives the k*k shifted copies,
        which are weighted and summed. A fixed handful of nodes whatever k is, any batch and size, and no
        dtype casts (an fp16 conversion of the graph stays consistent). It does build the k*k*C*H*W tensor
        that the eager path avoids: graphs run inference or compiled code, where that is the price of one
        graph for every shape.
        """
        b, c, h, wd = x.shape
        g, ho, wo = w.shape[1], w.shape[3], w.shape[4]
        one_hot = torch.eye(k * k, dtype=x.dtype, device=x.device).view(k * k, 1, k, k)
        shifted = nn.functional.conv2d(x.reshape(b * c, 1, h, wd), one_hot, None, s, (k - 1) // 2)
        shifted = shifted.view(b, g, c // g, k * k, ho, wo)
        return (shifted * w.unsqueeze(2)).sum(3).view(b, c, ho, wo)

    @staticmethod
    def window_mean(x, s: int):
        """AvgPool2d(s, s, ceil_mode=True) for graphs: the mean of each s x s window (of the values inside
        the image, at the bottom and right edges). Written as two convolutions whose output size has the
        same formula as unfold_sum's, (H - 1) // s + 1, so torch.export proves the sizes equal for every H
        instead of requiring even sizes (ceil mode's own size rule is another formula)."""
        b, c, h, wd = x.shape
        window = torch.zeros(2 * s - 1, 2 * s - 1, dtype=x.dtype, device=x.device)
        window[s - 1 :, s - 1 :] = 1.0
        window = window.view(1, 1, 2 * s - 1, 2 * s - 1)
        total = nn.functional.conv2d(x.reshape(b * c, 1, h, wd), window, None, s, s - 1)[:, 0]
        count = nn.functional.conv2d(torch.ones_like(x[:1, :1]), window, None, s, s - 1)[:, 0]
        return (total / count).view(b, c, total.shape[1], total.shape[2])

    @staticmethod
    def capturing() -> bool:
        """True while a graph is recorded: torch.jit.trace (and the legacy ONNX exporter), torch.compile,
        torch.export (and the dynamo ONNX exporter). Older torch has no torch.compiler."""
        if torch.jit.is_tracing():
            return True
        is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
        return bool(is_compiling is not None and is_compiling())


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
        if torch.jit.is_scripting():  # TorchScript compiles this branch only
            return self.graph_forward(x)
        return self.eager_forward(x)

    @torch.jit.unused
    def eager_forward(self, x):
        if InvolutionAggregate.capturing():
            return self.graph_forward(x)
        w = self.kernels(self.pool(x))
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):
            y = InvolutionAggregate.apply(x, w, self.k, self.s)
        else:
            y = InvolutionAggregate.aggregate(x, w, self.k, self.s)
        return self.proj(y)

    def graph_forward(self, x):
        """The same function as one graph for every batch and size (export, script, trace, compile)."""
        pooled = InvolutionAggregate.window_mean(x, self.s) if self.s > 1 else x
        return self.proj(InvolutionAggregate.unfold_sum(x, self.kernels(pooled), self.k, self.s))

    def kernels(self, x):
        """(B, C // gc, k*k, H', W'): a k x k kernel per pixel and group."""
        w = self.conv2(self.conv1(x))
        return w.view(w.shape[0], -1, self.k * self.k, w.shape[2], w.shape[3])
