"""Native forms load and run in OpenCV's darknet reader, and compute what the built-in builder computes.

OpenCV 5 has no darknet reader: the test downloads `opencv-python-headless<5` (4.14) into the test cache
(`pip download --no-deps`, never committed) and runs it in a child process, with random weights written in
darknet's binary layout (header; per [convolutional]: biases, then scales, means, variances when
batch_normalize, then weights)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import FIXTURES, download_opencv

from yolopatch.darknet.build import build_cfg
from yolopatch.darknet.cfg import Cfg, parse_cfg
from yolopatch.darknet.decide import Request
from yolopatch.darknet.edit import apply_cfg
from yolopatch.darknet.graph import IMAGE, walk
from yolopatch.operators.registry import OPERATORS

pytestmark = pytest.mark.real

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
RES3 = (FIXTURES / "darknet" / "res3.cfg").read_bytes().decode()
SIZE = 128

CHILD = """
import json, sys
import cv2, numpy as np
cfg, weights, image, out = sys.argv[1:5]
assert cv2.__version__.startswith("4."), cv2.__version__
net = cv2.dnn.readNetFromDarknet(cfg, weights)
net.setInput(np.load(image))
names = list(net.getUnconnectedOutLayersNames())
heads = [o.shape for o in net.forward(names)]
wanted = json.loads(sys.argv[5])
layers = [net.forward(name) for name in wanted]
np.savez(out, *layers)
print(json.dumps({"names": names, "heads": heads}))
"""


def _arrays(cfg: Cfg) -> list[tuple[str, np.ndarray]]:
    """Every [convolutional]'s tensors in darknet's order, random but fixed."""
    nodes = walk(cfg)
    channels = {IMAGE: cfg.net.number("channels", 3), **{n.index: n.channels for n in nodes}}
    rng = np.random.default_rng(0)
    found = []
    for section, node in zip(cfg.sections, nodes, strict=True):
        if section.kind != "convolutional":
            continue
        filters, size, c1 = section.number("filters", 1), section.number("size", 1), channels[node.sources[0]]
        found.append(("bias", rng.normal(0, 0.1, filters)))
        if section.number("batch_normalize", 0):
            found += [("scale", rng.uniform(0.5, 1.5, filters)), ("mean", rng.normal(0, 0.1, filters))]
            found.append(("variance", rng.uniform(0.5, 1.5, filters)))
        found.append(("weight", rng.normal(0, (2 / (c1 * size * size)) ** 0.5, filters * c1 * size * size)))
    return found


def _darknet_weights(cfg: Cfg) -> bytes:
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    return header + b"".join(a.astype(np.float32).tobytes() for _, a in _arrays(cfg))


def _load(model, cfg: Cfg) -> None:
    """The same tensors into the built-in builder's model (eval mode: batch norm uses them)."""
    arrays = iter(_arrays(cfg))
    for layer in model.layers():
        if layer.kind != "convolutional":
            continue
        conv, *rest = list(layer.body)
        bn = rest[0] if isinstance(rest[0], torch.nn.BatchNorm2d) else None
        values = {}
        for _ in range(4 if bn is not None else 1):
            name, array = next(arrays)
            values[name] = torch.tensor(array, dtype=torch.float32)
        weight = next(arrays)[1]
        conv.weight.data = torch.tensor(weight, dtype=torch.float32).reshape(conv.weight.shape)
        if bn is None:
            conv.bias.data = values["bias"]
            continue
        bn.weight.data, bn.bias.data = values["scale"], values["bias"]
        bn.running_mean.data, bn.running_var.data = values["mean"], values["variance"]
        bn.eps = 1e-5  # OpenCV's darknet reader uses darknet's epsilon (.00001)


@pytest.fixture(scope="module")
def opencv() -> Path:
    return download_opencv()


def _run(opencv: Path, text: str, folder: Path, outputs: list[str]) -> tuple[dict, list[np.ndarray]]:
    cfg = parse_cfg(text, "m.cfg")
    (folder / "m.cfg").write_text(text)
    (folder / "m.weights").write_bytes(_darknet_weights(cfg))
    image = np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32)
    np.save(folder / "image.npy", image)
    files = [str(folder / name) for name in ("m.cfg", "m.weights", "image.npy", "out.npz")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(opencv), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *files, json.dumps(outputs)], capture_output=True, text=True, env=env
    )
    assert child.returncode == 0, child.stderr[-2000:]
    saved = np.load(folder / "out.npz")
    return json.loads(child.stdout), [saved[f"arr_{i}"] for i in range(len(outputs))]


@pytest.mark.parametrize("name", ["se", "sam"])
@pytest.mark.parametrize(
    ("text", "layers"),
    [
        pytest.param(TINY4, "8,16", id="tiny4-after-csp-stages"),
        pytest.param(RES3, "12,17", id="res3-after-shortcut-and-before-spp"),
    ],
)
def test_a_native_form_runs_in_opencv_as_in_the_builder(opencv, tmp_path, text, layers, name):
    op = OPERATORS[name]
    result = apply_cfg(text, layers, Request(op, op.defaults, insert=True), "m.cfg")
    cfg = parse_cfg(result.text, "m.cfg")
    heads = [n for n in walk(cfg) if n.head]
    predictions = [f"conv_{n.index - 1}" for n in heads]  # the convolution each [yolo] head reads
    found, arrays = _run(opencv, result.text, tmp_path, predictions)
    assert found["names"] == [f"yolo_{n.index}" for n in heads]
    assert found["heads"] == [[(SIZE // int(n.stride)) ** 2 * 3, 85] for n in heads]  # type: ignore[arg-type]
    model = build_cfg(cfg).eval()
    _load(model, cfg)
    image = torch.tensor(np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32))
    with torch.no_grad():
        ours = [o.numpy() for o in model(image)]
    for theirs, mine in zip(arrays, ours, strict=True):
        assert theirs.shape == mine.shape
        assert np.abs(theirs - mine).max() < 1e-3 * max(1.0, np.abs(mine).max())
