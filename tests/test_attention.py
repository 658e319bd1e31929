"""The SE, CBAM, ECA, CoordAtt and SimAM templates: the papers' equations, shapes, parameter counts, errors,
gradients, tracing, ONNX export, autocast, and the rules for text that is pasted into a YOLOv5 common.py."""

from __future__ import annotations

import ast
import builtins
import importlib
import math
import symtable
from pathlib import Path

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from references import REFERENCES, randomize, simam_reference
from torch import nn

from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.paste import template_paste
from yolopatch.templates.cbam import CBAM
from yolopatch.templates.common import Conv
from yolopatch.templates.coordatt import CoordAtt
from yolopatch.templates.eca import ECA
from yolopatch.templates.se import SE
from yolopatch.templates.simam import SimAM

TEMPLATES = Path(__file__).resolve().parent.parent / "yolopatch" / "templates"
CLASSES = {"se": SE, "cbam": CBAM, "eca": ECA, "coordatt": CoordAtt, "simam": SimAM}
CLASS_IDS = list(CLASSES)


def build(cls, c, seed=0, **kwargs):
    torch.manual_seed(seed)
    return randomize(cls(c, c, **kwargs), seed)


# ---------------------------------------------------------------- hypothesis strategies per operator


@st.composite
def configs(draw, cls):
    """(channels, keyword arguments) that the constructor accepts."""
    if cls is SE:
        c = draw(st.integers(1, 48))
        return c, {"r": draw(st.sampled_from([r for r in (1, 2, 4, 16) if c // r >= 1]))}
    if cls is CBAM:
        c = draw(st.integers(1, 48))
        r = draw(st.sampled_from([r for r in (1, 2, 4, 16) if c // r >= 1]))
        return c, {"r": r, "k": draw(st.sampled_from([1, 3, 5, 7]))}
    if cls is ECA:
        return draw(st.integers(1, 64)), {"k": draw(st.sampled_from([None, 1, 3, 5, 9]))}
    if cls is CoordAtt:
        return draw(st.integers(1, 64)), {"r": draw(st.sampled_from([1, 4, 32]))}
    return draw(st.integers(1, 16)), {"e_lambda": draw(st.sampled_from([1e-4, 1e-2, 1.0]))}


def cases(cls):
    return st.tuples(
        configs(cls), st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**16)
    )


# ---------------------------------------------------------------- shapes


SHAPES = [(1, 1, 1), (3, 1, 1), (8, 1, 1), (16, 1, 7), (16, 7, 1), (17, 5, 9), (32, 13, 13), (64, 20, 20)]


# ---------------------------------------------------------------- parameter counts


def se_params(c, r=16):
    return 2 * c * (c // r) + c // r + c


def cbam_params(c, r=16, k=7):
    return 2 * c * (c // r) + c // r + c + 2 * k * k + 2


def eca_params(c, k):
    return k


def coordatt_params(c, r=32):
    mip = max(8, c // r)
    return 3 * c * mip + 3 * mip + 2 * c


PARAM_CASES = [
    (SE, 16, {}, se_params(16)),
    (SE, 64, {}, se_params(64)),
    (SE, 64, {"r": 4}, se_params(64, 4)),
    (SE, 100, {"r": 8}, se_params(100, 8)),
    (SE, 1024, {}, 2 * 1024 * 64 + 64 + 1024),
    (CBAM, 16, {}, cbam_params(16)),
    (CBAM, 256, {}, cbam_params(256)),
    (CBAM, 256, {"r": 8, "k": 3}, cbam_params(256, 8, 3)),
    (CBAM, 48, {"r": 2, "k": 5}, cbam_params(48, 2, 5)),
    (CBAM, 512, {}, 2 * 512 * 32 + 32 + 512 + 98 + 2),
    (ECA, 64, {}, 3),
    (ECA, 256, {}, 5),
    (ECA, 256, {"k": 9}, eca_params(256, 9)),
    (ECA, 7, {"k": 1}, 1),
    (CoordAtt, 16, {}, coordatt_params(16)),
    (CoordAtt, 64, {}, coordatt_params(64)),
    (CoordAtt, 512, {}, coordatt_params(512)),
    (CoordAtt, 512, {"r": 8}, coordatt_params(512, 8)),
    (CoordAtt, 1024, {}, 3 * 1024 * 32 + 3 * 32 + 2 * 1024),
    (SimAM, 64, {}, 0),
    (SimAM, 1024, {"e_lambda": 0.5}, 0),
]


@pytest.mark.parametrize(
    "cls, c, kwargs, expected",
    PARAM_CASES,
    ids=[f"{cls.__name__}-{c}-{kw}" for cls, c, kw, _ in PARAM_CASES],
)
def test_parameter_count_matches_formula(cls, c, kwargs, expected):
    assert sum(p.numel() for p in cls(c, c, **kwargs).parameters()) == expected


# ---------------------------------------------------------------- agreement with the references


def check_reference(cls, case, train):
    (c, kwargs), batch, h, w, seed = case
    module = build(cls, c, seed, **kwargs).train(train)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, c, h, w, generator=g) * 2 + 0.5
    with torch.no_grad():
        expected = REFERENCES[cls.__name__](module, x, train)
        got = module(x)
    assert got.shape == expected.shape
    # fp32 sums in another order: within a few ulps of the output's scale (train-mode BatchNorm over two
    # values, a 1x1 CoordAtt, magnifies them)
    assert (got - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())


# train mode only where BatchNorm makes it differ from eval mode
MODES = [(cls, False) for cls in CLASSES.values()] + [(CBAM, True), (CoordAtt, True)]


@pytest.mark.parametrize(
    "cls, train", MODES, ids=[f"{cls.__name__}-{'train' if t else 'eval'}" for cls, t in MODES]
)
def test_matches_reference(cls, train):
    @settings(max_examples=25, deadline=None)
    @given(cases(cls))
    def check(case):
        (_c, _kwargs), batch, h, w, _seed = case
        # BatchNorm2d(1) over N x H x W values needs more than one of them in train mode
        assume(not (train and cls is CBAM and batch * h * w == 1))
        check_reference(cls, case, train)

    check()


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("hw", [(3, 11), (11, 3), (1, 6), (6, 1), (4, 5)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("cls", [CBAM, CoordAtt], ids=["cbam", "coordatt"])
def test_non_square_inputs_match_reference(cls, hw, train):
    check_reference(cls, ((24, {"r": 4}), 2, hw[0], hw[1], 7), train)


@pytest.mark.parametrize(
    "cls, eps, momentum",
    [(CBAM, 1e-5, 0.01), (CoordAtt, 1e-5, 0.1)],
    ids=["cbam-official-basicconv", "coordatt-official-default"],
)
def test_batch_norm_settings_follow_the_official_code(cls, eps, momentum):
    (bn,) = [m for m in cls(64, 64).modules() if isinstance(m, nn.BatchNorm2d)]
    assert (bn.eps, bn.momentum, bn.affine, bn.track_running_stats) == (eps, momentum, True, True)


def test_coordatt_transposed_input_with_swapped_branches_gives_transposed_output():
    module = build(CoordAtt, 16, 3).eval()
    swapped = CoordAtt(16, 16)
    swapped.load_state_dict(module.state_dict())
    with torch.no_grad():
        swapped.conv_h.load_state_dict(module.conv_w.state_dict())
        swapped.conv_w.load_state_dict(module.conv_h.state_dict())
    swapped.eval()
    x = torch.randn(2, 16, 5, 9)
    with torch.no_grad():
        assert (swapped(x.transpose(2, 3)) - module(x).transpose(2, 3)).abs().max() < 1e-6


def test_cbam_transposed_input_with_transposed_kernel_gives_transposed_output():
    module = build(CBAM, 32, 4, r=4, k=5).eval()
    transposed = CBAM(32, 32, r=4, k=5)
    transposed.load_state_dict(module.state_dict())
    with torch.no_grad():
        transposed.spatial[0].weight.copy_(module.spatial[0].weight.transpose(2, 3))
    transposed.eval()
    x = torch.randn(2, 32, 4, 10)
    with torch.no_grad():
        assert (transposed(x.transpose(2, 3)) - module(x).transpose(2, 3)).abs().max() < 1e-6


def test_cbam_spatial_descriptor_is_max_then_mean():
    # the official ChannelPool concatenates (max, mean); a kernel that reads only input channel 0 sees the max
    module = CBAM(4, 4, r=1, k=1).eval()
    with torch.no_grad():
        for p in module.mlp.parameters():
            p.zero_()  # channel gate = sigmoid(0) = 1/2 everywhere
        module.spatial[0].weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    x = torch.randn(1, 4, 3, 3)
    expected = 0.5 * x * torch.sigmoid((0.5 * x).max(dim=1, keepdim=True).values / math.sqrt(1 + 1e-5))
    with torch.no_grad():
        assert (module(x) - expected).abs().max() < 1e-6


def test_simam_on_1x1_maps_is_finite_and_gates_with_sigmoid_half():
    x = torch.randn(3, 8, 1, 1, requires_grad=True)
    y = SimAM(8, 8)(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y, x * torch.sigmoid(torch.tensor(0.5)), atol=1e-7, rtol=0)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_simam_on_constant_channels_gates_with_sigmoid_half():
    x = torch.full((1, 2, 4, 6), 3.0)
    assert torch.allclose(SimAM(2, 2)(x), x * torch.sigmoid(torch.tensor(0.5)))


def test_simam_half_precision_with_large_values_stays_finite():
    # sum of squares over 40 x 40 values of size ~300 is about 1.4e8, far beyond float16's 65504
    x = (torch.randn(1, 4, 40, 40) * 300).half()
    got = SimAM(4, 4)(x)
    assert got.dtype == torch.float16 and torch.isfinite(got).all()
    expected = simam_reference(SimAM(4, 4), x.float(), False)
    assert torch.allclose(got.float(), expected, rtol=1e-2, atol=1e-1)


def test_simam_repr_names_lambda():
    assert "e_lambda=0.01" in repr(SimAM(8, 8, e_lambda=0.01))


# ---------------------------------------------------------------- constructor errors


ERROR_CASES = [
    ("se-c2", SE, (64, 128), "SE keeps its channels: c2=128 must equal c1=64"),
    ("cbam-c2", CBAM, (64, 128), "CBAM keeps its channels: c2=128 must equal c1=64"),
    ("eca-c2", ECA, (64, 32), "ECA keeps its channels: c2=32 must equal c1=64"),
    ("coordatt-c2", CoordAtt, (64, 65), "CoordAtt keeps its channels: c2=65 must equal c1=64"),
    ("simam-c2", SimAM, (64, 128), "SimAM keeps its channels: c2=128 must equal c1=64"),
    ("se-reduction-to-zero", SE, (8, 8), "leaves 0 hidden channels"),
    ("se-reduction-to-zero-r", SE, (64, 64, 128), "leaves 0 hidden channels"),
    ("se-r0", SE, (64, 64, 0), "r >= 1"),
    ("se-r-negative", SE, (64, 64, -4), "r >= 1"),
    ("cbam-reduction-to-zero", CBAM, (15, 15), "leaves 0 hidden channels"),
    ("cbam-r0", CBAM, (64, 64, 0), "r >= 1"),
    ("cbam-even-k", CBAM, (64, 64, 16, 4), "odd spatial kernel"),
    ("cbam-k0", CBAM, (64, 64, 16, 0), "odd spatial kernel"),
    ("eca-even-k", ECA, (64, 64, 4), "odd kernel"),
    ("eca-k0", ECA, (64, 64, 0), "odd kernel"),
    ("eca-k-negative", ECA, (64, 64, -3), "odd kernel"),
    ("eca-no-channels", ECA, (0, 0), "at least one channel"),
    ("coordatt-r0", CoordAtt, (64, 64, 0), "r >= 1"),
    ("coordatt-no-channels", CoordAtt, (0, 0), "at least one channel"),
    ("simam-negative-lambda", SimAM, (64, 64, -1e-4), "e_lambda > 0"),
    ("simam-zero-lambda", SimAM, (64, 64, 0.0), "e_lambda > 0"),
    ("simam-nan-lambda", SimAM, (64, 64, float("nan")), "e_lambda > 0"),
]


@pytest.mark.parametrize("cls, args, message", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_bad_arguments_raise_value_error(cls, args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        cls(*args)
    assert cls.__name__ in str(info.value)


# t = int(|(log2 C + 1) / 2|), k = t if odd else t + 1, worked out by hand:
# C=1: t=int(0.5)=0 -> 1; 4: int(1.5)=1 -> 1; 8: 2 -> 3; 16: int(2.5)=2 -> 3; 32: 3 -> 3; 64: int(3.5)=3 -> 3;
# 96: int(3.79)=3 -> 3; 128: 4 -> 5; 192: int(4.29)=4 -> 5; 256: int(4.5)=4 -> 5; 512: 5 -> 5;
# 768: int(5.29)=5 -> 5; 1024: int(5.5)=5 -> 5; 2048: 6 -> 7
ECA_K = {
    1: 1,
    4: 1,
    8: 3,
    16: 3,
    32: 3,
    64: 3,
    96: 3,
    128: 5,
    192: 5,
    256: 5,
    512: 5,
    768: 5,
    1024: 5,
    2048: 7,
}


@pytest.mark.parametrize("c, k", ECA_K.items(), ids=[f"C{c}" for c in ECA_K])
def test_eca_adaptive_kernel_size(c, k):
    module = ECA(c, c)
    assert module.conv.kernel_size == (k,) and module.conv.padding == ((k - 1) // 2,)
    t = int(abs((math.log2(c) + 1) / 2))
    assert k == (t if t % 2 else t + 1)


# ---------------------------------------------------------------- the template text


@pytest.mark.parametrize("stem", CLASS_IDS)
def test_template_file_is_docstring_imports_and_one_class(stem):
    source = (TEMPLATES / f"{stem}.py").read_text(encoding="utf-8")
    tree = ast.parse(source)
    body = tree.body
    docstring = ast.get_docstring(tree)
    assert docstring and "github.com" in docstring and ("arxiv.org" in docstring or "mlr.press" in docstring)
    allowed = {"import math", "import torch", "from torch import nn"}
    imports = [n for n in body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert {ast.unparse(n) for n in imports} <= allowed
    classes = [n for n in body if isinstance(n, ast.ClassDef)]
    assert [c.name for c in classes] == [CLASSES[stem].__name__]
    assert len(body) == 1 + len(imports) + 1  # docstring, imports, the class: nothing else
    class_doc = ast.get_docstring(classes[0])
    assert class_doc and "Args:" in class_doc and "c2" in class_doc
    assert "arxiv.org" in class_doc or "mlr.press" in class_doc


@pytest.mark.parametrize("stem", CLASS_IDS)
def test_class_body_uses_only_math_torch_nn_as_globals(stem):
    path = TEMPLATES / f"{stem}.py"
    table = symtable.symtable(path.read_text(encoding="utf-8"), str(path), "exec")
    allowed = {"math", "torch", "nn"} | set(dir(builtins))
    (cls_table,) = [t for t in table.get_children() if t.get_name() == CLASSES[stem].__name__]
    used = set()
    pending = [cls_table]
    while pending:
        t = pending.pop()
        used |= {s.get_name() for s in t.get_symbols() if s.is_global() and s.is_referenced()}
        pending.extend(t.get_children())
    assert used <= allowed, used - allowed


def test_pasted_templates_work_together_in_a_common_py_namespace():
    """What inject pastes (yolopatch.paste, every operator) runs in one common.py-like namespace that has
    torch, nn, math and a Conv, and builds modules equal to the templates'."""
    namespace = {"math": math, "torch": torch, "nn": nn, "Conv": Conv}
    before = set(namespace)
    pastes = {op.name: template_paste(op.template) for op in OPERATORS.values()}
    for name, paste in pastes.items():
        exec(compile(paste.body, f"<pasted {name}>", "exec"), namespace)
    assert set(namespace) - before - {"__builtins__"} == {
        c for paste in pastes.values() for c in paste.classes
    }
    x = torch.randn(2, 32, 5, 7)
    for name in pastes:
        original = build(
            getattr(importlib.import_module(f"yolopatch.templates.{get_operator(name).template}"), name),
            32,
            1,
        ).eval()
        pasted = namespace[name](32, 32)
        pasted.load_state_dict(original.state_dict())
        with torch.no_grad():
            assert torch.equal(pasted.eval()(x), original(x)), name
