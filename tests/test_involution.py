"""The Involution module: reference semantics, shapes, gradients, dtypes, tracing, export, formulas."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from references import unfold_aggregation

from yolopatch.operators.involution import involution_macs, involution_params, output_size
from yolopatch.templates.common import Conv
from yolopatch.templates.involution import Involution, InvolutionAggregate

shapes = st.fixed_dictionaries(
    {
        "batch": st.integers(1, 2),
        "groups": st.integers(1, 3),
        "gc": st.sampled_from([1, 2, 4, 16]),
        "k": st.sampled_from([1, 3, 5, 7]),
        "s": st.sampled_from([1, 2, 3]),
        "h": st.integers(1, 13),
        "w": st.integers(1, 13),
    }
)


def _inputs(shape: dict, dtype=torch.float32):
    c = shape["groups"] * shape["gc"]
    ho, wo = output_size(shape["h"], shape["k"], shape["s"]), output_size(shape["w"], shape["k"], shape["s"])
    x = torch.randn(shape["batch"], c, shape["h"], shape["w"], dtype=dtype)
    w = torch.randn(shape["batch"], shape["groups"], shape["k"] ** 2, ho, wo, dtype=dtype)
    return x, w


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_aggregation_matches_unfold_aggregation(shape):
    x, w = _inputs(shape)
    expected = unfold_aggregation(x, w, shape["k"], shape["s"])
    for aggregation in (InvolutionAggregate.aggregate, InvolutionAggregate.unfold_sum):
        got = aggregation(x, w, shape["k"], shape["s"])
        assert (got - expected).abs().max() < 1e-5
    assert (InvolutionAggregate.apply(x, w, shape["k"], shape["s"]) - expected).abs().max() < 1e-5


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_custom_backward_matches_autograd_of_reference(shape):
    x, w = _inputs(shape)
    x1, w1 = x.clone().requires_grad_(), w.clone().requires_grad_()
    x2, w2 = x.clone().requires_grad_(), w.clone().requires_grad_()
    grad = torch.randn(x.shape[0], x.shape[1], w.shape[-2], w.shape[-1])
    InvolutionAggregate.apply(x1, w1, shape["k"], shape["s"]).backward(grad)
    unfold_aggregation(x2, w2, shape["k"], shape["s"]).backward(grad)
    assert (x1.grad - x2.grad).abs().max() < 1e-4
    assert (w1.grad - w2.grad).abs().max() < 1e-4


def test_pieces_that_split_groups_and_batches_agree_with_the_reference():
    # 6 groups of 16 channels at 64x64: pieces of 2**18 values hold 4 groups, so each batch item splits in two
    x, w = _inputs({"batch": 2, "groups": 6, "gc": 16, "k": 3, "s": 1, "h": 64, "w": 64})
    assert len({str(piece) for piece, _, _ in InvolutionAggregate.passes(x, w, 3, 1)}) == 4
    x1, w1, x2, w2 = (t.clone().requires_grad_() for t in (x, w, x, w))
    ours, reference = InvolutionAggregate.apply(x1, w1, 3, 1), unfold_aggregation(x2, w2, 3, 1)
    assert (ours - reference).abs().max() < 1e-5
    grad = torch.randn_like(ours)
    ours.backward(grad), reference.backward(grad)
    assert (x1.grad - x2.grad).abs().max() < 1e-4 and (w1.grad - w2.grad).abs().max() < 1e-4


@pytest.mark.parametrize(("k", "s", "h", "w"), [(3, 1, 5, 4), (5, 2, 7, 6), (7, 2, 9, 9), (3, 3, 8, 5)])
def test_gradcheck_in_float64(k, s, h, w):
    x, wt = _inputs({"batch": 1, "groups": 2, "gc": 2, "k": k, "s": s, "h": h, "w": w}, torch.float64)
    assert torch.autograd.gradcheck(
        lambda a, b: InvolutionAggregate.apply(a, b, k, s), (x.requires_grad_(), wt.requires_grad_())
    )


@pytest.mark.parametrize("size", [(20, 20), (21, 21), (13, 8), (1, 1), (2, 3)])
@pytest.mark.parametrize(("k", "s"), [(3, 1), (7, 1), (7, 2), (5, 2), (3, 3)])
def test_output_size_equals_conv_with_same_kernel_and_stride(size, k, s):
    x = torch.randn(1, 32, *size)
    assert Involution(32, 48, k, s).eval()(x).shape == Conv(32, 48, k, s).eval()(x).shape


@pytest.mark.parametrize(
    ("c1", "c2", "k", "s", "gc", "r"),
    [
        (64, 64, 7, 1, 16, 4),
        (64, 128, 7, 2, 16, 4),
        (48, 32, 3, 1, 8, 2),
        (16, 16, 5, 1, 16, 16),
        (24, 24, 1, 1, 3, 1),
    ],
)
def test_parameter_count_formula(c1, c2, k, s, gc, r):
    module = Involution(c1, c2, k, s, gc, r)
    assert sum(p.numel() for p in module.parameters()) == involution_params(c1, c2, k, gc, r)


@pytest.mark.parametrize(
    ("c1", "c2", "k", "s", "h", "w"), [(64, 64, 7, 1, 20, 20), (64, 128, 7, 2, 21, 19), (32, 16, 3, 1, 8, 8)]
)
def test_macs_formula_matches_thop_plus_aggregation(c1, c2, k, s, h, w):
    thop = pytest.importorskip("thop")
    module = Involution(c1, c2, k, s)
    counted, _ = thop.profile(module, inputs=(torch.randn(1, c1, h, w),), verbose=False)
    cost = involution_macs(c1, c2, h, w, k, s)
    assert counted == cost.counted_by_thop
    assert cost.aggregation == k * k * c1 * output_size(h, k, s) * output_size(w, k, s)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"c1": 24, "c2": 24}, "gc values that divide 24: [1, 2, 3, 4, 6, 8, 12, 24]"),
        ({"c1": 3, "c2": 16}, "not divisible by gc=16"),
        ({"c1": 16, "c2": 16, "r": 32}, "c1 // r = 16 // 32 is 0"),
        ({"c1": 16, "c2": 16, "k": 4}, "must be odd"),
        ({"c1": 16, "c2": 16, "s": 0}, "stride s=0"),
    ],
)
def test_bad_arguments_raise_value_error_that_says_what_works(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Involution(**kwargs)


def test_bf16_autocast_accumulates_in_float32():
    torch.manual_seed(0)
    x, w = _inputs({"batch": 1, "groups": 4, "gc": 16, "k": 7, "s": 1, "h": 20, "w": 20}, torch.bfloat16)
    exact = unfold_aggregation(x.double(), w.double(), 7, 1)
    got = InvolutionAggregate.aggregate(x, w, 7, 1)
    assert got.dtype == torch.bfloat16
    # one bf16 rounding of the result (2**-8 relative), not 49 roundings of a bf16 running sum
    assert ((got.double() - exact).abs() <= exact.abs() * 2**-8 + 1e-6).all()


def test_module_runs_forward_and_backward_under_cpu_autocast():
    module = Involution(32, 32, 7, 2)
    x = torch.randn(
        1, 32, 15, 15, dtype=torch.bfloat16, requires_grad=True
    )  # as a bf16 conv would hand it on
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = module(x)
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_autocast_matches_fp32():
    module = Involution(32, 32, 7, 1).cuda()
    x = torch.randn(2, 32, 20, 20, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.float16):
        y = module(x)
    y.float().sum().backward()
    assert torch.allclose(y.float(), module(x).float(), atol=5e-2)


def test_deepcopy_and_state_dict_round_trip():
    module = Involution(32, 32, 3, 1)
    x = torch.randn(1, 32, 8, 8)
    clone = copy.deepcopy(module)
    fresh = Involution(32, 32, 3, 1)
    fresh.load_state_dict(module.state_dict())
    module.eval(), clone.eval(), fresh.eval()
    assert torch.equal(clone(x), module(x)) and torch.equal(fresh(x), module(x))
