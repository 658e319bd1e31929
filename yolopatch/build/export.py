"""`check --export`: export a built model as a deployment would, run the file, compare it with eager.

ONNX goes through `torch.onnx.export` the way the target's own exporter calls it, with a dynamic batch,
height and width: torch's default exporter (dynamo), which the checkout families' export.py reaches in torch 2.x, or
the legacy TorchScript-based one, which some targets' exporters ask for (`dynamo=False`); onnxruntime then runs
the file at the export shape and at another batch and size. TorchScript is `torch.jit.trace`, as the checkout families' export.py does, run at
the same two shapes. When the model does not export, or differs, each layer is exported alone with the
input it receives, and the first that fails is named.

Needs the `export` extra (onnx, onnxruntime, onnxscript) for ONNX; torch alone for TorchScript.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from yolopatch.errors import YolopatchError
from yolopatch.report import TOLERANCE, ExportReport, Parity

FORMATS = ("onnx", "torchscript")


def other_shape(shape: tuple[int, int, int, int], multiple: int) -> tuple[int, int, int, int]:
    """Another batch and size for the parity run: one more image, and a smaller size that is still a
    multiple of the model's largest stride (the size a dynamic model is used at in practice)."""
    n, c, h, _ = shape
    size = max(multiple, (h // 2) // multiple * multiple)
    if size == h:
        size = h + multiple
    return (n + 1, c, size, size)


def export_model(
    model: nn.Module,
    fmt: str,
    shape: tuple[int, int, int, int],
    multiple: int,
    layer_names: Sequence[str],
    legacy_onnx: bool = False,
) -> ExportReport:
    """Export `model` (eval mode) to `fmt` at `shape`, dynamic in batch and size (sizes a multiple of
    `multiple`), and compare it with eager at `shape` and another one. Raises YolopatchError naming the
    first layer that does not export or differs (`layer_names`: one per layer of `model.model`).
    `legacy_onnx`: the TorchScript-based ONNX exporter instead of dynamo."""
    if fmt not in FORMATS:
        raise YolopatchError(f"--export {fmt}: use one of {', '.join(FORMATS)}.")
    if fmt == "onnx":
        _require("onnx", "onnxruntime", *([] if legacy_onnx else ["onnxscript"]))
    model = model.eval()
    inputs = [torch.randn(*shape), torch.randn(*other_shape(shape, multiple))]
    exporter = _legacy_onnx if fmt == "onnx" and legacy_onnx else _EXPORTERS[fmt]
    try:
        report = exporter(model, inputs, multiple)
    except Exception as exc:  # whatever the exporter raised: find the layer it comes from
        raise YolopatchError(
            _culprit(model, inputs[0], fmt, layer_names) or f"export failed: {_brief(exc)}"
        ) from None
    if not report.ok:
        culprit = _culprit(model, inputs[0], fmt, layer_names)
        worst = max(report.parity, key=lambda p: p.max_rel)
        raise YolopatchError(
            f"the exported model differs from eager at {_shape(worst.shape)} (max abs {worst.max_abs:.2e}, "
            f"relative {worst.max_rel:.2e} > {TOLERANCE:g})" + (f"; {culprit}" if culprit else "")
        )
    return report


def _require(*modules: str) -> None:
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise YolopatchError(
            f'--export onnx needs {", ".join(missing)}: pip install "yolopatch[export]" '
            "(onnx, onnxruntime, onnxscript, onnxconverter-common)."
        )


def _onnx(model: nn.Module, inputs: list[torch.Tensor], multiple: int) -> ExportReport:
    import onnx
    import onnxruntime

    example = inputs[0] if inputs[0].shape[0] > 1 else torch.cat([inputs[0]] * 2)  # batch 1 is specialised
    most = 8192 // multiple
    height, width = torch.export.Dim("height", min=1, max=most), torch.export.Dim("width", min=1, max=most)
    dims = {0: torch.export.Dim("batch", min=1, max=1024), 2: multiple * height, 3: multiple * width}
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=["images"], dynamic_shapes={"x": dims}, verbose=False
        )
        assert program is not None  # dynamo=True always returns one
        path = Path(scratch) / "model.onnx"
        program.save(str(path))
        data = path.read_bytes()
    graph = onnx.load_from_string(data)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    parity = tuple(_parity(model, x, lambda x: session.run(None, {"images": x.numpy()})) for x in inputs)
    opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), None)
    runtime = f"onnxruntime {onnxruntime.__version__}"
    return ExportReport(
        "onnx", f"torch.onnx.export (dynamo), {runtime}", opset, len(graph.graph.node), len(data), parity
    )


def _legacy_onnx(model: nn.Module, inputs: list[torch.Tensor], multiple: int) -> ExportReport:
    import onnx
    import onnxruntime

    axes = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")
        path = Path(scratch) / "model.onnx"
        torch.onnx.export(
            model,
            (inputs[0],),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            dynamic_axes={"images": axes},
        )
        data = path.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    parity = tuple(_parity(model, x, lambda x: session.run(None, {"images": x.numpy()})) for x in inputs)
    runtime = f"onnxruntime {onnxruntime.__version__}"
    nodes = len(onnx.load_from_string(data).graph.node)
    return ExportReport(
        "onnx", f"torch.onnx.export (legacy, dynamo=False), {runtime}", 17, nodes, len(data), parity
    )


def _torchscript(model: nn.Module, inputs: list[torch.Tensor], multiple: int) -> ExportReport:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, inputs[0], strict=False)
    buffer = io.BytesIO()
    torch.jit.save(traced, buffer)
    nodes = sum(1 for _ in traced.inlined_graph.nodes())
    parity = tuple(_parity(model, x, lambda x: _flatten(traced(x))) for x in inputs)
    return ExportReport("torchscript", "torch.jit.trace", None, nodes, len(buffer.getvalue()), parity)


_EXPORTERS: dict[str, Callable[[nn.Module, list[torch.Tensor], int], ExportReport]] = {
    "onnx": _onnx,
    "torchscript": _torchscript,
}


def _parity(model: nn.Module, x: torch.Tensor, run: Callable[[torch.Tensor], Any]) -> Parity:
    with torch.no_grad():
        expected = [t.numpy() for t in _flatten(model(x))]
        got = [t.numpy() if isinstance(t, torch.Tensor) else t for t in _flatten(run(x))]
    if len(got) != len(expected) or any(g.shape != e.shape for g, e in zip(got, expected, strict=False)):
        return Parity(tuple(x.shape), float("inf"), float("inf"))
    max_abs = max(float(abs(g - e).max()) for g, e in zip(got, expected, strict=True))
    scale = max(float(abs(e).max()) for e in expected)
    return Parity(tuple(x.shape), max_abs, max_abs / max(scale, 1e-12))


def _flatten(output: Any) -> list[Any]:
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _flatten(item)]
    return [output]


def _culprit(model: nn.Module, x: torch.Tensor, fmt: str, names: Sequence[str]) -> str | None:
    """The first layer that, exported alone with the input it receives, fails or differs."""
    layers = getattr(model, "model", None)
    if not isinstance(layers, nn.Sequential):
        return None
    received: dict[int, Any] = {}
    hooks = [
        layer.register_forward_pre_hook(lambda _m, args, i=i: received.setdefault(i, args[0]))
        for i, layer in enumerate(layers)
    ]
    try:
        with torch.no_grad():
            model(x)
    except Exception:  # an eager failure is check's to report, not the exporter's
        return None
    finally:
        for hook in hooks:
            hook.remove()
    for i, layer in enumerate(layers):
        argument = received.get(i)
        if not isinstance(argument, torch.Tensor):
            continue  # several inputs (Concat, Detect): plain tensor code, not what breaks exports
        try:
            report = (
                _torchscript(_Alone(layer), [argument, torch.randn_like(argument)], 1)
                if fmt == "torchscript"
                else _single(layer, argument)
            )
        except Exception as exc:
            return f"layer {i} ({names[i]}) does not export: {_brief(exc)}"
        if not report.ok:
            worst = max(report.parity, key=lambda p: p.max_rel)
            return f"layer {i} ({names[i]}) differs from eager (relative {worst.max_rel:.2e})"
    return None


class _Alone(nn.Module):
    """One layer as a model of its own, for exporting it alone."""

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer

    def forward(self, x):
        return self.layer(x)


def _single(layer: nn.Module, x: torch.Tensor) -> ExportReport:
    """A layer exported alone, dynamic where its exporter can make it so, run at its own input and at a
    larger batch and size (a graph that baked in its values or its shape fails there)."""
    import onnx
    import onnxruntime

    auto = torch.export.Dim.AUTO
    with torch.no_grad(), warnings.catch_warnings(), tempfile.TemporaryDirectory() as scratch:
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _Alone(layer),
            (x,),
            dynamo=True,
            input_names=["x"],
            dynamic_shapes={"x": {0: auto, 2: auto, 3: auto}},
            verbose=False,
        )
        assert program is not None
        path = Path(scratch) / "layer.onnx"
        program.save(str(path))
        data = path.read_bytes()
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    n, c, h, w = x.shape
    inputs = (x, torch.randn(n + 1, c, 2 * h, 2 * w))
    parity = tuple(_parity(_Alone(layer), t, lambda t: session.run(None, {"x": t.numpy()})) for t in inputs)
    return ExportReport("onnx", "", None, len(onnx.load_from_string(data).graph.node), len(data), parity)


def _brief(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0][:200] if lines else ''}"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))
