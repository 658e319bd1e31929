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
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import FIXTURES, ROOT, download_opencv, run_cli

from yolopatch.darknet.build import build_cfg
from yolopatch.darknet.cfg import parse_cfg
from yolopatch.darknet.decide import Request
from yolopatch.darknet.edit import apply_cfg
from yolopatch.darknet.graph import walk
from yolopatch.darknet.opencv import darknet_weights, load_arrays, random_arrays
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


@pytest.fixture(scope="module")
def opencv() -> Path:
    return download_opencv()


def _run(opencv: Path, text: str, folder: Path, outputs: list[str]) -> tuple[dict, list[np.ndarray]]:
    cfg = parse_cfg(text, "m.cfg")
    (folder / "m.cfg").write_text(text)
    (folder / "m.weights").write_bytes(darknet_weights(random_arrays(cfg)))
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
    load_arrays(model, random_arrays(cfg))
    image = torch.tensor(np.random.default_rng(1).random((1, 3, SIZE, SIZE), dtype=np.float32))
    with torch.no_grad():
        ours = [o.numpy() for o in model(image)]
    for theirs, mine in zip(arrays, ours, strict=True):
        assert theirs.shape == mine.shape
        assert np.abs(theirs - mine).max() < 1e-3 * max(1.0, np.abs(mine).max())


def test_check_export_opencv_runs_the_cfg_in_opencvs_darknet_reader(opencv, tmp_path):
    """`check MODEL.cfg --export opencv`: OpenCV 4 reads the cfg with random weights and its [yolo] heads read
    what the built-in builder computes; a section OpenCV does not know is its own error, named; a yaml is
    refused."""
    op = OPERATORS["se"]
    (tmp_path / "se.cfg").write_text(
        apply_cfg(TINY4, "8", Request(op, op.defaults, insert=True), "m.cfg").text
    )
    env = {"PYTHONPATH": str(opencv)}
    result = run_cli("check", "se.cfg", "--img", "128", "--export", "opencv", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("opencv export"))
    assert line.startswith(
        "opencv export (OpenCV 4.14.0 cv2.dnn.readNetFromDarknet, random weights in darknet"
    )
    assert "[yolo] outputs 48x85, 192x85" in line and line.endswith("; ok.")
    cbam = OPERATORS["cbam"]
    (tmp_path / "cbam.cfg").write_text(
        apply_cfg(TINY4, "8", Request(cbam, cbam.defaults, insert=True), "m.cfg").text
    )
    result = run_cli("check", "cbam.cfg", "--img", "128", "--export", "opencv", cwd=tmp_path, env=env)
    assert result.returncode == 1 and "Unknown layer type: cbam" in result.stderr
    (tmp_path / "m.yaml").write_text((ROOT / "examples" / "yolov5s.yaml").read_text())
    result = run_cli("check", "m.yaml", "--export", "opencv", cwd=tmp_path)
    assert result.returncode == 2 and "--export opencv runs darknet .cfg models in OpenCV" in result.stderr


@pytest.mark.parametrize(
    ("cv2", "message"),
    [
        pytest.param(None, "OpenCV is not installed for", id="not-installed"),
        pytest.param(
            SimpleNamespace(__version__="5.1.0", dnn=SimpleNamespace()),
            "OpenCV 5.1.0 has no darknet reader (OpenCV 5 dropped it): pip install 'opencv-python-headless<5'",
            id="opencv-5",
        ),
    ],
)
def test_the_opencv_child_says_what_to_install(monkeypatch, cv2, message):
    from yolopatch.children.opencv import run

    monkeypatch.setitem(sys.modules, "cv2", cv2)
    assert message in run("m.cfg", "m.weights", "i.npy", "o.npz", [])["error"]
