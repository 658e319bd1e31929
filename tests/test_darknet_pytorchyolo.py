"""The built-in cfg builder against a PyTorch codebase's own `Darknet` class: `pytorchyolo` from PyPI
(downloaded into the test cache with `pip download --no-deps`, never committed), built in a child process.

Its import chain wants imgaug, which the test environment does not have and the model never calls: the
child gets a stand-in, as torchvision has (tests/stubs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import FIXTURES, STUBS, download_pytorchyolo

from yolopatch.darknet.measure import check_cfg

pytestmark = pytest.mark.real

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
RES3 = (FIXTURES / "darknet" / "res3.cfg").read_bytes().decode()

CHILD = """
import json, sys, torch
from pytorchyolo.models import Darknet
model = Darknet(sys.argv[1])
model.train()
model(torch.zeros(1, 3, 128, 128))
strides = [float(layer.stride) for layer in model.yolo_layers]
print(json.dumps({"params": sum(p.numel() for p in model.parameters()), "strides": strides}))
"""


@pytest.fixture(scope="module")
def pytorchyolo(tmp_path_factory) -> dict[str, str]:
    """The child's environment: the unpacked wheel, a stand-in imgaug, the torchvision stub."""
    stand_ins = tmp_path_factory.mktemp("stand-ins")
    (stand_ins / "imgaug.py").write_text("def seed(value):\n    pass\n")
    path = [str(download_pytorchyolo()), str(stand_ins), str(STUBS)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def _own_build(env: dict[str, str], text: str, folder: Path) -> subprocess.CompletedProcess:
    cfg = folder / "model.cfg"
    cfg.write_text(text)
    return subprocess.run([sys.executable, "-c", CHILD, str(cfg)], capture_output=True, text=True, env=env)


@pytest.mark.parametrize(
    "text",
    [pytest.param(TINY4, id="tiny4"), pytest.param(RES3.replace(" ###P4", ""), id="res3")],
)
def test_parameters_and_strides_equal_pytorchyolos_own(pytorchyolo, tmp_path, text):
    child = _own_build(pytorchyolo, text, tmp_path)
    assert child.returncode == 0, child.stderr[-2000:]
    theirs = json.loads(child.stdout)
    ours = check_cfg(text, "model.cfg", 128, 1)
    assert (ours.params, ours.strides) == (theirs["params"], theirs["strides"])


def test_an_inline_comment_on_an_index_fails_in_pytorchyolo_not_in_yolopatch(pytorchyolo, tmp_path):
    """darknet and OpenCV read `layers = -1, 12 ###P4` as 12 (atoi); pytorchyolo's int() refuses it."""
    child = _own_build(pytorchyolo, RES3, tmp_path)
    assert child.returncode != 0 and "invalid literal for int()" in child.stderr
    assert check_cfg(RES3, "res3.cfg", 64, 1).strides == [16.0, 8.0]
