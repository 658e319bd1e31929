"""Reference functions for every operator, written from its paper's equations with plain tensor ops: one
function per operator in REFERENCES, keyed by its yaml name. A new operator adds its reference here; the
contract suite (test_operator_contract.py) holds every registered operator to it.

Each takes (module, x, train) and computes what the module must output, from the module's weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F


def randomize(module, seed=0):
    """Non-trivial BatchNorm affine parameters and running statistics, so eval and train modes differ."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in module.modules():
            if isinstance(bn, nn.BatchNorm2d):
                n = bn.num_features
                bn.weight.copy_(torch.rand(n, generator=g) + 0.5)
                bn.bias.copy_(torch.randn(n, generator=g))
                bn.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                bn.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return module


def unfold_aggregation(x: torch.Tensor, w: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """d-li14/involution's aggregation: unfold to the K*K*C*H*W tensor, weight, sum."""
    b, c, _, _ = x.shape
    g, ho, wo = w.shape[1], w.shape[-2], w.shape[-1]
    cols = F.unfold(x, k, padding=(k - 1) // 2, stride=s).view(b, g, c // g, k * k, ho, wo)
    return (w.view(b, g, 1, k * k, ho, wo) * cols).sum(3).view(b, c, ho, wo)


def conv_bn_silu_reference(y, conv, train):
    """YOLOv5's Conv: convolution without bias, BatchNorm, SiLU."""
    z = F.conv2d(y, conv.conv.weight, None, conv.conv.stride, conv.conv.padding, groups=conv.conv.groups)
    return F.silu(batch_norm_reference(z, conv.bn, train))


def involution_reference(m, x, train):
    """Involution (Li et al., Eq. 4 with the reference code's kernel generation): W = conv2(Conv(pool_s(x)))
    reshaped to (B, C // gc, k*k, H', W'); Y = sum over the k*k offsets of W * the unfolded x; then the 1x1
    Conv projection when c2 != c1."""
    k, s = m.k, m.s
    pooled = F.avg_pool2d(x, s, s, ceil_mode=True) if s > 1 else x
    hidden = conv_bn_silu_reference(pooled, m.conv1, train)
    w = F.conv2d(hidden, m.conv2.weight, m.conv2.bias)
    b, _, ho, wo = w.shape
    y = unfold_aggregation(x, w.view(b, -1, k * k, ho, wo), k, s)
    return y if isinstance(m.proj, nn.Identity) else conv_bn_silu_reference(y, m.proj, train)


def batch_norm_reference(y, bn, train):
    """BatchNorm over every axis but 1: batch statistics (biased variance) in train mode, running ones in eval."""
    dims = [d for d in range(y.dim()) if d != 1]
    shape = [1, -1] + [1] * (y.dim() - 2)
    if train:
        mean, var = y.mean(dims, keepdim=True), y.var(dims, unbiased=False, keepdim=True)
    else:
        mean, var = bn.running_mean.view(shape), bn.running_var.view(shape)
    return (y - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(shape) + bn.bias.view(shape)


def se_reference(m, x, train):
    """SENet Eqs. 2-4: z = mean over H x W; s = sigmoid(W2 relu(W1 z)) (with biases); out = s * x."""
    w1, b1 = m.fc[0].weight.flatten(1), m.fc[0].bias
    w2, b2 = m.fc[2].weight.flatten(1), m.fc[2].bias
    z = x.mean(dim=(2, 3))
    s = torch.sigmoid(F.relu(z @ w1.T + b1) @ w2.T + b2)
    return x * s[:, :, None, None]


def cbam_reference(m, x, train):
    """CBAM Eqs. 1-3: Mc = sigmoid(MLP(AvgPool F) + MLP(MaxPool F)), F' = Mc * F;
    Ms = sigmoid(BN(conv_k([max over C; mean over C]))) (the official order and BN), F'' = Ms * F'."""
    w0, b0 = m.mlp[0].weight, m.mlp[0].bias
    w1, b1 = m.mlp[2].weight, m.mlp[2].bias

    def mlp(v):
        return F.relu(v @ w0.T + b0) @ w1.T + b1

    mc = torch.sigmoid(mlp(x.flatten(2).mean(2)) + mlp(x.flatten(2).max(2).values))
    f1 = x * mc[:, :, None, None]
    descriptor = torch.stack((f1.max(dim=1).values, f1.mean(dim=1)), dim=1)
    weight = m.spatial[0].weight
    ms = torch.sigmoid(
        batch_norm_reference(F.conv2d(descriptor, weight, padding=weight.shape[-1] // 2), m.spatial[1], train)
    )
    return f1 * ms


def eca_reference(m, x, train):
    """ECA Eq. 4 with sharing: w_i = sigmoid(sum_j a_j y_(i+j-p)), y the channel averages, zero beyond the ends."""
    a = m.conv.weight.flatten()
    k = a.numel()
    y = F.pad(x.mean(dim=(2, 3)), ((k - 1) // 2, (k - 1) // 2))
    c = x.shape[1]
    w = torch.sigmoid(sum(a[j] * y[:, j : j + c] for j in range(k)))
    return x * w[:, :, None, None]


def coordatt_reference(m, x, train):
    """Coordinate attention Eqs. 4-9: z^h, z^w the averages along W and H; f = h_swish(BN(F1([z^h, z^w])));
    g^h = sigmoid(F_h(f^h)), g^w = sigmoid(F_w(f^w)); y = x * g^h * g^w."""
    h = x.shape[2]
    z = torch.cat((x.mean(dim=3), x.mean(dim=2)), dim=2)  # (N, C, H + W)
    f = torch.einsum("mc,ncl->nml", m.conv1.weight.flatten(1), z) + m.conv1.bias[:, None]
    f = batch_norm_reference(f, m.bn1, train)
    f = f * torch.clamp(f + 3, 0, 6) / 6
    fh, fw = f[:, :, :h], f[:, :, h:]
    gh = torch.sigmoid(torch.einsum("cm,nml->ncl", m.conv_h.weight.flatten(1), fh) + m.conv_h.bias[:, None])
    gw = torch.sigmoid(torch.einsum("cm,nml->ncl", m.conv_w.weight.flatten(1), fw) + m.conv_w.bias[:, None])
    return x * gh[:, :, :, None] * gw[:, :, None, :]


def simam_reference(m, x, train):
    """SimAM Eqs. 5-6 in the energy form: 1 / e* = ((t - mu)^2 + 2 sigma^2 + 2 lambda) / (4 (sigma^2 + lambda)),
    sigma^2 = sum (x - mu)^2 / (M - 1) as in the official code; out = x * sigmoid(1 / e*). On a 1x1 map
    t = mu, so 1 / e* = 1/2."""
    mmap = x.shape[2] * x.shape[3]
    if mmap == 1:
        return x * torch.sigmoid(torch.full_like(x, 0.5))
    lam = m.e_lambda
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = ((x - mu) ** 2).sum(dim=(2, 3), keepdim=True) / (mmap - 1)
    inverse_energy = ((x - mu) ** 2 + 2 * var + 2 * lam) / (4 * (var + lam))
    return x * torch.sigmoid(inverse_energy)


def sam_reference(m, x, train):
    """YOLOv4's modified SAM (section 3.4, figure 6): out = x * sigmoid(BN(W x)), W a 1x1 convolution."""
    y = torch.einsum("oc,bchw->bohw", m.conv.weight.flatten(1), x)
    return x * torch.sigmoid(batch_norm_reference(y, m.bn, train))


REFERENCES: dict[str, Callable[[nn.Module, torch.Tensor, bool], torch.Tensor]] = {
    "Involution": involution_reference,
    "SE": se_reference,
    "CBAM": cbam_reference,
    "ECA": eca_reference,
    "CoordAtt": coordatt_reference,
    "SimAM": simam_reference,
    "SAM": sam_reference,
}
