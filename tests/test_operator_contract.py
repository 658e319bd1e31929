"""The contract every registered operator keeps, parametrised over the registry.

A module is built as parse_model builds it: `cls(c1, c2, *yaml_args[1:])`, from the spec's own yaml
arguments. A new operator needs its spec, its template and its reference function (references.py), and
nothing in this file.
"""

from __future__ import annotations

import importlib
import io
import math
import warnings

import pytest
import torch
from references import REFERENCES, randomize

from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator

OPS = [pytest.param(op, id=key) for key, op in OPERATORS.items()]


def operator_class(op: Operator) -> type[torch.nn.Module]:
    return getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)


def smallest_width(op: Operator) -> int:
    """The fewest input channels the spec accepts with its defaults."""
    return next(c for c in range(1, 4097) if op.channel_problem(c, op.defaults) is None)


def widths(op: Operator) -> list[int]:
    """Input widths to test at: the smallest the spec accepts, and two multiples of it near usual sizes."""
    c0 = smallest_width(op)
    usual = c0 * math.ceil(32 / c0)
    return sorted({c0, usual, 2 * usual})


def output_widths(op: Operator, c1: int) -> list[int]:
    return [c1] if op.keeps_channels else [c1, 2 * c1, max(1, c1 // 2)]


def strides(op: Operator) -> list[int]:
    return [1, 2] if op.strided else [1]


def build(op: Operator, c1: int, c2: int | None = None, stride: int = 1, seed: int = 0) -> torch.nn.Module:
    """The module parse_model builds from the row the spec writes, with non-trivial BatchNorm statistics."""
    c2 = c1 if c2 is None else c2
    torch.manual_seed(seed)
    args = op.yaml_args(c2, stride, op.defaults)
    return randomize(operator_class(op)(c1, c2, *args[1:]), seed)


def expected_shape(shape: tuple[int, ...], c2: int, stride: int) -> tuple[int, ...]:
    n, _, h, w = shape
    return (n, c2, math.ceil(h / stride), math.ceil(w / stride))


CONFIGS = [
    pytest.param(op, c1, c2, s, id=f"{key}-{c1}-{c2}-s{s}")
    for key, op in OPERATORS.items()
    for c1 in widths(op)
    for c2 in output_widths(op, c1)
    for s in strides(op)
]


@pytest.mark.parametrize(("op", "c1", "c2", "stride"), CONFIGS)
def test_parameter_formula_equals_the_built_module(op, c1, c2, stride):
    module = build(op, c1, c2, stride)
    assert sum(p.numel() for p in module.parameters()) == op.params(c1, c2, op.defaults)


@pytest.mark.parametrize(("op", "c1", "c2", "stride"), CONFIGS)
def test_output_shape_in_eval_and_train_mode(op, c1, c2, stride):
    module = build(op, c1, c2, stride)
    for shape in [(1, c1, 1, 1), (2, c1, 1, 7), (1, c1, 13, 13), (2, c1, 21, 8)]:
        x = torch.randn(*shape)
        y = module.eval()(x)
        assert y.shape == expected_shape(shape, c2, stride) and y.dtype == x.dtype and torch.isfinite(y).all()
    x = torch.randn(2, c1, 11, 6)
    assert module.train()(x).shape == expected_shape(x.shape, c2, stride)


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize(("op", "c1", "c2", "stride"), CONFIGS)
def test_matches_its_reference(op, c1, c2, stride, train):
    module = build(op, c1, c2, stride, seed=3).train(train)
    x = torch.randn(2, c1, 9, 7, generator=torch.Generator().manual_seed(3)) * 2 + 0.5
    with torch.no_grad():
        expected = REFERENCES[op.name](module, x, train)
        got = module(x)
    assert got.shape == expected.shape
    # fp32 sums in another order: within a few ulps of the output's scale
    assert (got - expected).abs().max() < 1e-5 * max(1.0, expected.abs().max().item())


@pytest.mark.parametrize("op", OPS)
def test_every_parameter_and_the_input_get_finite_gradients(op):
    c = widths(op)[1]
    module = build(op, c, c, strides(op)[-1], seed=5).train()
    x = torch.randn(2, c, 6, 9, requires_grad=True)
    y = module(x)
    (y * torch.randn_like(y)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("op", OPS)
def test_channel_keeping_operators_refuse_other_output_channels(op):
    c = widths(op)[1]
    if not op.keeps_channels:
        assert build(op, c, 2 * c).eval()(torch.randn(1, c, 4, 4)).shape[1] == 2 * c
        return
    with pytest.raises(ValueError, match=f"{op.name} keeps its channels: c2={2 * c} must equal c1={c}"):
        build(op, c, 2 * c)


@pytest.mark.parametrize("op", OPS)
def test_the_smallest_width_the_spec_accepts_builds_and_one_less_is_refused(op):
    c0 = smallest_width(op)
    x = torch.randn(1, c0, 3, 2)
    assert build(op, c0).eval()(x).shape == x.shape
    if c0 > 1:
        assert op.channel_problem(c0 - 1, op.defaults) is not None
        with pytest.raises(ValueError, match=op.name):
            build(op, c0 - 1)


def _example(op: Operator) -> tuple[torch.nn.Module, torch.Tensor]:
    c = widths(op)[1]
    return build(op, c, c, strides(op)[-1], seed=11).eval(), torch.randn(1, c, 7, 10)


@pytest.mark.parametrize("op", OPS)
def test_torch_jit_trace_matches_eager_at_other_shapes(op):
    module, x = _example(op)
    c = x.shape[1]
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(module, (x,))
        for inp in (x, torch.randn_like(x), torch.randn(2, c, 5, 3), torch.randn(1, c, 1, 1)):
            assert (traced(inp) - module(inp)).abs().max() < 1e-5


def _onnx(module: torch.nn.Module, x: torch.Tensor, **options) -> bytes:
    """The legacy (TorchScript-based) exporter's model."""
    pytest.importorskip("onnx")
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (x,), buffer, dynamo=False, input_names=["x"], **options)
    return buffer.getvalue()


def _session(model: bytes):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def _assert_runs_like_eager(session, module, inputs, dtype="float32", tolerance=1e-4):
    """The session's outputs equal eager's, relative to the output's scale."""
    for inp in inputs:
        (got,) = session.run(None, {session.get_inputs()[0].name: inp.numpy().astype(dtype)})
        with torch.no_grad():
            expected = module(inp).numpy()
        assert abs(got.astype("float32") - expected).max() < tolerance * max(1.0, abs(expected).max()), (
            inp.shape
        )


# batch, height and width: what a deployed model is asked for; torch.export's 0/1 specialisation needs
# sizes of at least 2 everywhere inside, i.e. 3 at the input for a stride-2 operator
DYNAMIC = {0: ("batch", 1), 2: ("height", 3), 3: ("width", 3)}


def _other_shapes(c: int) -> list[torch.Tensor]:
    return [torch.randn(*shape) for shape in [(2, c, 5, 13), (4, c, 9, 4), (1, c, 16, 16)]]


@pytest.mark.parametrize("opset", [12, 17])
@pytest.mark.parametrize("op", OPS)
def test_onnx_export_matches_eager(op, opset):
    module, x = _example(op)
    _assert_runs_like_eager(_session(_onnx(module, x, opset_version=opset)), module, [x])


@pytest.mark.parametrize("op", OPS)
def test_onnx_export_with_dynamic_sizes_matches_eager_at_other_sizes(op):
    module, x = _example(op)
    dynamic = {"x": {axis: name for axis, (name, _) in DYNAMIC.items()}}
    session = _session(_onnx(module, x, opset_version=17, dynamic_axes=dynamic))
    _assert_runs_like_eager(session, module, [*_other_shapes(x.shape[1]), torch.randn(1, x.shape[1], 1, 1)])


def _dims() -> dict[str, dict[int, torch.export.Dim]]:
    return {"x": {axis: torch.export.Dim(name, min=low, max=4096) for axis, (name, low) in DYNAMIC.items()}}


@pytest.mark.parametrize("op", OPS)
def test_dynamo_onnx_export_with_dynamic_shapes_matches_eager_at_other_shapes(op, tmp_path):
    """torch.onnx.export's default exporter in torch 2.x (dynamo=True), as YOLOv5's export.py --dynamic uses."""
    pytest.importorskip("onnxscript")
    module, x = _example(op)
    x = torch.randn(2, *x.shape[1:])  # an example batch of 1 would be specialised
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module, (x,), dynamo=True, input_names=["x"], dynamic_shapes=_dims(), verbose=False
        )
    path = tmp_path / "model.onnx"
    program.save(str(path))
    _assert_runs_like_eager(_session(path.read_bytes()), module, _other_shapes(x.shape[1]))


@pytest.mark.parametrize("op", OPS)
def test_torch_export_with_dynamic_shapes_matches_eager_at_other_shapes(op):
    module, x = _example(op)
    x = torch.randn(2, *x.shape[1:])
    program = torch.export.export(module, (x,), dynamic_shapes=_dims())
    for inp in _other_shapes(x.shape[1]):
        with torch.no_grad():
            assert (program.module()(inp) - module(inp)).abs().max() < 1e-5 * max(
                1.0, module(inp).abs().max().item()
            )


@pytest.mark.parametrize("op", OPS)
def test_torch_jit_script_matches_eager(op):
    module, x = _example(op)
    scripted = torch.jit.script(module)
    for inp in [x, *_other_shapes(x.shape[1])]:
        with torch.no_grad():
            assert (scripted(inp) - module(inp)).abs().max() < 1e-5 * max(1.0, module(inp).abs().max().item())


@pytest.mark.parametrize("op", OPS)
def test_openvino_runs_the_dynamic_onnx_model_like_eager(op):
    """OpenVINO from the ONNX file, as Intel deployments do, at fp32 (its CPU default may be bf16)."""
    ov = pytest.importorskip("openvino")
    module, x = _example(op)
    dynamic = {"x": {axis: name for axis, (name, _) in DYNAMIC.items()}}
    model = ov.Core().read_model(
        io.BytesIO(_onnx(module, x, opset_version=17, dynamic_axes=dynamic)).getvalue(), b""
    )
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for inp in _other_shapes(x.shape[1]):
        with torch.no_grad():
            expected = module(inp).numpy()
        got = compiled(inp.numpy())[0]
        assert abs(got - expected).max() < 1e-4 * max(1.0, abs(expected).max()), inp.shape


@pytest.mark.parametrize("op", OPS)
def test_fp16_onnx_from_the_standard_converter_loads_and_matches(op):
    """onnxconverter-common's float16 conversion, the usual road to an fp16 ONNX or TensorRT model: the file
    must load (no fp32 casts left behind) and give eager's fp32 outputs to fp16 precision."""
    float16 = pytest.importorskip("onnxconverter_common.float16")
    onnx = pytest.importorskip("onnx")
    module, x = _example(op)
    dynamic = {"x": {axis: name for axis, (name, _) in DYNAMIC.items()}}
    half = float16.convert_float_to_float16(
        onnx.load_from_string(_onnx(module, x, opset_version=17, dynamic_axes=dynamic))
    )
    _assert_runs_like_eager(
        _session(half.SerializeToString()), module, _other_shapes(x.shape[1]), "float16", 5e-3
    )


@pytest.mark.parametrize("input_dtype", ["float32", "low"], ids=["fp32-input", "low-input"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("op", OPS)
def test_cpu_autocast_forward_and_backward_close_to_float32(op, dtype, input_dtype):
    # "low-input": the input already in the autocast dtype, as a YOLOv5 Conv's output is under AMP
    c = widths(op)[1]
    module = build(op, c, c, seed=2).train()
    x = torch.randn(2, c, 8, 12)
    if input_dtype == "low":
        x = x.to(dtype).float()  # the same values in both runs
    expected = module(x).detach()
    x = (x.to(dtype) if input_dtype == "low" else x.clone()).requires_grad_()
    with torch.autocast("cpu", dtype=dtype):
        y = module(x)
    y.float().sum().backward()
    assert y.shape == x.shape and torch.isfinite(y.float()).all()
    assert torch.isfinite(x.grad.float()).all()
    assert all(torch.isfinite(p.grad).all() for p in module.parameters())
    assert (y.float() - expected).abs().max() < 0.02 * expected.abs().max()


def test_every_operator_has_a_reference():
    assert {op.name for op in OPERATORS.values()} <= set(REFERENCES)
