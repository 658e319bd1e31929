"""Exported graphs of the operators: node counts and onnxruntime latency next to eager, side by side.

    .venv/bin/python benchmarks/export.py          (needs the export extra: onnx, onnxruntime, onnxscript)

For Involution at C=256, 40x40 (stride 1 and 2) and for yolov5s with and without an Involution in place of
layer 8: nodes of the legacy export (static and dynamic axes) and of the dynamo export (dynamic), and the
median of eager and onnxruntime latency at one thread, measured interleaved in one run.
"""

from __future__ import annotations

import io
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import onnx
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolopatch.build.builder import build_model  # noqa: E402
from yolopatch.channels import geometry, simulate  # noqa: E402
from yolopatch.commands.apply import ApplyOptions, apply_operator  # noqa: E402
from yolopatch.modelyaml import parse_model_yaml  # noqa: E402
from yolopatch.targets.registry import target_for  # noqa: E402
from yolopatch.templates.involution import Involution  # noqa: E402

RUNS = 15
EXAMPLE = (Path(__file__).resolve().parent.parent / "examples" / "yolov5s.yaml").read_text(encoding="utf-8")


def legacy(model, x, dynamic):
    buffer = io.BytesIO()
    axes = {"x": {0: "n", 2: "h", 3: "w"}} if dynamic else None
    torch.onnx.export(
        model, (x,), buffer, dynamo=False, opset_version=17, input_names=["x"], dynamic_axes=axes
    )
    return buffer.getvalue()


def dynamo(model, x, multiple):
    x = torch.cat([x, x]) if x.shape[0] == 1 else x
    dims = {
        0: torch.export.Dim("n", max=64),
        2: multiple * torch.export.Dim("h", max=64),
        3: multiple * torch.export.Dim("w", max=64),
    }
    program = torch.onnx.export(
        model, (x,), dynamo=True, input_names=["x"], dynamic_shapes={"x": dims}, verbose=False
    )
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "m.onnx"
        program.save(str(path))
        return path.read_bytes()


def timed(run):
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) * 1e3


def compare(name, model, x, multiple):
    model = model.eval()
    files = {
        "legacy static": legacy(model, x, False),
        "legacy dynamic": legacy(model, x, True),
        "dynamo dynamic": dynamo(model, x, multiple),
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    sessions = {
        k: ort.InferenceSession(v, options, providers=["CPUExecutionProvider"]) for k, v in files.items()
    }
    feed = x.numpy()
    times = {"eager": [], **{k: [] for k in sessions}}
    with torch.no_grad():
        for _ in range(RUNS):  # interleaved: every variant sees the same machine load
            times["eager"].append(timed(lambda: model(x)))
            for key, session in sessions.items():
                times[key].append(timed(lambda s=session: s.run(None, {s.get_inputs()[0].name: feed})))
    nodes = {k: len(onnx.load_from_string(v).graph.node) for k, v in files.items()}
    eager = statistics.median(times["eager"])
    print(f"{name}: eager {eager:.1f} ms")
    for key in sessions:
        median = statistics.median(times[key])
        print(
            f"  {key:15s} {nodes[key]:5d} nodes  onnxruntime {median:7.1f} ms  ({median / eager:.2f}x eager)"
        )


def yolov5s(text):
    parsed = parse_model_yaml(text)
    return build_model(
        parsed,
        simulate(parsed.logical_rows(), geometry(parsed.values, target_for(parsed.values).rules), "m"),
        target_for(parsed.values).builtin(),
    )


def main():
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    for s in (1, 2):
        compare(
            f"Involution(256, 256, 7, {s}) at 1x256x40x40",
            Involution(256, 256, 7, s),
            torch.randn(1, 256, 40, 40),
            2,
        )
    x = torch.randn(1, 3, 320, 320)
    compare("yolov5s at 1x3x320x320", yolov5s(EXAMPLE), x, 32)
    compare(
        "yolov5s, Involution at layer 8", yolov5s(apply_operator(EXAMPLE, "8", ApplyOptions()).text), x, 32
    )


if __name__ == "__main__":
    main()
