"""check --export: a whole patched model exported as a deployment would, run, and compared with eager."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from helpers import EXAMPLE, build_of, geometry_of, run_cli
from torch import nn

from yolopatch.build.export import export_model, other_shape
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.operators.registry import get_operator

pytest.importorskip("onnxscript")


def _patched(tmp_path):
    """yolov5s with Involution in place of layer 8 and a SimAM after the SPPF."""
    text = apply_operator(EXAMPLE, "8", ApplyOptions()).text
    text = apply_operator(text, "9", ApplyOptions(get_operator("simam"), insert=True)).text
    path = tmp_path / "patched.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_patched_model_exports_to_onnx_and_the_line_says_what_was_proven(tmp_path):
    result = run_cli("check", str(_patched(tmp_path)), "--img", "64", "--export", "onnx")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip().splitlines()[-1]
    assert line.startswith("onnx export (torch.onnx.export (dynamo), onnxruntime ") and line.endswith("; ok.")
    assert "1x3x64x64: max abs" in line and "2x3x32x32: max abs" in line and " nodes, " in line
    opset = int(line.split(", opset ")[1].split(")")[0])
    assert opset >= 18


def test_a_patched_model_exports_to_torchscript_and_matches_eager_at_another_batch_and_size(tmp_path):
    result = run_cli("check", str(_patched(tmp_path)), "--img", "64", "--export", "torchscript", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["model"]["export"]
    assert report["format"] == "torchscript" and report["nodes"] > 0 and report["size_bytes"] > 1e6
    assert [p["shape"] for p in report["parity"]] == [[1, 3, 64, 64], [2, 3, 32, 32]]
    assert all(p["max_rel"] <= 1e-4 for p in report["parity"])


OTHER_SHAPES = [
    pytest.param((1, 3, 640, 640), 32, (2, 3, 320, 320), id="half-the-size"),
    pytest.param((1, 3, 64, 64), 64, (2, 3, 128, 128), id="one-step-up-when-half-is-too-small"),
    pytest.param((4, 3, 96, 96), 32, (5, 3, 32, 32), id="a-multiple-of-the-stride"),
]


@pytest.mark.parametrize(("shape", "multiple", "expected"), OTHER_SHAPES)
def test_the_other_shape_is_another_batch_and_a_size_the_strides_allow(shape, multiple, expected):
    assert other_shape(shape, multiple) == expected


class _Branches(nn.Module):
    """Python control flow on the values: no exporter can record it as a graph."""

    def forward(self, x):
        return x * 2 if bool(x.sum() > 0) else -x


class _Numpy(nn.Module):
    """A detour through numpy: a trace bakes its output in (the dynamo exporter can follow it)."""

    def forward(self, x):
        return torch.from_numpy(x.detach().numpy() * 2)


class _Layers(nn.Module):
    def __init__(self, *layers):
        super().__init__()
        self.model = nn.Sequential(*layers)

    def forward(self, x):
        return self.model(x)


@pytest.mark.parametrize(
    ("fmt", "odd"), [("onnx", _Branches()), ("torchscript", _Numpy())], ids=["onnx", "torchscript"]
)
def test_a_layer_that_does_not_export_is_named(fmt, odd):
    model = _Layers(nn.Conv2d(3, 8, 3, padding=1), odd, nn.Conv2d(8, 8, 1))
    with pytest.raises(YolopatchError, match=r"layer 1 \(Odd\) (does not export|differs from eager)"):
        export_model(model, fmt, (1, 3, 32, 32), 32, ["Conv", "Odd", "Conv"])


def test_onnx_without_the_export_extra_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "onnxscript" else real(name)
    )
    with pytest.raises(YolopatchError, match=r'needs onnxscript: pip install "yolopatch\[export\]"'):
        export_model(_Layers(nn.Conv2d(3, 8, 1)), "onnx", (1, 3, 32, 32), 32, ["Conv"])


def test_export_with_a_yolov5_checkout_is_refused_before_any_build(tmp_path):
    path = tmp_path / "yolov5s.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    result = run_cli("check", str(path), "--repo", str(tmp_path), "--export", "onnx")
    assert result.returncode == 1 and "leave out --repo" in result.stderr


def test_the_trace_of_a_whole_model_runs_at_other_sizes():
    """What TorchScript users get: the traced yolov5s-with-operators is not fixed to its example size."""
    from yolopatch.channels import simulate
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(apply_operator(EXAMPLE, "8", ApplyOptions()).text)
    model = build_of(parsed, simulate(parsed.logical_rows(), geometry_of(parsed.values), "m")).eval()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64), strict=False)
        x = torch.randn(2, 3, 96, 128)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(traced(x), model(x), strict=True))
