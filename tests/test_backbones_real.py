"""Backbones swapped in and built by the targets' own model classes: YOLOv5 7.0.14 (the pip package) and
ultralytics 8.4.190, 8.3.253 (its own TorchVision/Index branch), 8.3.60 (its own Index, in a branch that
prepends c1, c2: yolopatch's branch for the backbone) and 8.3.0 (yolopatch's Index and branch):
inject, `check --repo` agreeing with the built-in builder, strides [8, 16, 32], one training step with the
target's own criterion on a synthetic batch, and `--revert` restoring every byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import EXAMPLE, STUBS, download_ultralytics, font_home, run_cli, snapshot
from test_backbones import BACKBONES, TIMM
from test_ultralytics_real import Environment, checked

from yolopatch.userop.record import load

# --- the targets' own model classes -----------------------------------------------------------------------------


def _learned(work: Path, spec: str, env: dict[str, str] | None = None) -> None:
    shutil.copy(BACKBONES, work / "backbones.py")
    result = run_cli("ops", "add", spec, cwd=work, env=env)
    assert result.returncode == 0, result.stderr


# one training step with the target's own criterion, on a synthetic batch
ULTRALYTICS_LOSS_STEP = """
import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.tasks import DetectionModel

torch.manual_seed(0)
model = DetectionModel("y.yaml", verbose=False)
model.args = get_cfg()
batch = {
    "img": torch.rand(2, 3, 128, 128),
    "batch_idx": torch.tensor([0.0, 1.0]),
    "cls": torch.tensor([[1.0], [3.0]]),
    "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]]),
}
loss, _ = model.loss(batch)
loss.sum().backward()
grads = all(p.grad is not None for p in model.parameters() if p.requires_grad)
print("strides", *model.stride.tolist(), "loss", "finite" if torch.isfinite(loss).all() else "bad", "grads", "all" if grads else "some")
"""

YOLOV5_LOSS_STEP = """
import torch
from yolov5.models.yolo import Model
from yolov5.utils.loss import ComputeLoss

torch.manual_seed(0)
model = Model("m.yaml")
model.hyp = {"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0, "fl_gamma": 0.0, "label_smoothing": 0.0}
model.train()
targets = torch.tensor([[0, 1, 0.5, 0.5, 0.2, 0.3], [1, 3, 0.3, 0.6, 0.1, 0.1]])
loss, _ = ComputeLoss(model)(model(torch.rand(2, 3, 128, 128)), targets)
loss.backward()
grads = all(p.grad is not None for p in model.parameters() if p.requires_grad)
print("strides", *model.stride.tolist(), "loss", "finite" if torch.isfinite(loss).all() else "bad", "grads", "all" if grads else "some")
"""


def _ok(*args: str, cwd: Path, env: dict[str, str]) -> str:
    """The command's stdout, once it succeeded."""
    result = run_cli(*args, cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_yolov5_own_model_builds_the_backbone_and_revert_restores_every_byte(yolov5_packages, tmp_path):
    site, work = tmp_path / "site", tmp_path / "work"
    shutil.copytree(yolov5_packages["7.0.14"], site / "yolov5")
    work.mkdir()
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    stock = snapshot(site / "yolov5")
    _learned(work, "backbones.py:WidthListNet")
    (work / "m.yaml").write_text(EXAMPLE)
    _ok("apply", "m.yaml", "--backbone", "WidthListNet", "--in-place", cwd=work, env=env)
    reports = {}
    for repo in ([], ["--repo", str(site / "yolov5")]):
        if repo:
            injected = _ok("inject", repo[1], "--for", "m.yaml", cwd=work, env=env)
            assert "backbone branch" in injected and "class Index" in injected
        shown = _ok("check", "m.yaml", *repo, "--img", "128", "--json", cwd=work, env=env)
        reports[bool(repo)] = json.loads(shown)["model"]
    own = reports[True]
    assert own["params"] == reports[False]["params"] and own["strides"] == [8, 16, 32]
    assert f"{own['params']} parameters" in own["reference"]  # YOLOv5's own summary line
    assert own["layers"][0]["output"].count("[1, ") == 3  # the backbone: one row with its three outputs
    step = subprocess.run(
        [sys.executable, "-c", YOLOV5_LOSS_STEP],
        capture_output=True,
        text=True,
        cwd=work,
        env={**os.environ, **env, "PYTHONPATH": os.pathsep.join([str(site), str(STUBS)])},
    )
    assert step.returncode == 0, step.stderr[-2000:]
    assert step.stdout.split()[-8:] == ["strides", "8.0", "16.0", "32.0", "loss", "finite", "grads", "all"]
    _ok("inject", str(site / "yolov5"), "--revert", cwd=work, env=env)
    assert snapshot(site / "yolov5") == stock


@pytest.mark.parametrize(
    ("version", "stock", "spec", "registered"),
    [
        ("8.4.190", "cfg/models/11/yolo11.yaml", "backbones.py:ChannelNet", "TorchVision/Index branch"),
        ("8.3.253", "cfg/models/v8/yolov8.yaml", "timm:standin_net", "TorchVision/Index branch"),
        ("8.3.0", "cfg/models/v8/yolov8.yaml", "backbones.py:tiny_backbone", "backbone branch"),
        # its own Index and TorchVision, in a branch that prepends c1, c2: yolopatch's branch for the backbone
        ("8.3.60", "cfg/models/v8/yolov8.yaml", "backbones.py:WidthListNet", "backbone branch"),
    ],
)
def test_ultralytics_own_model_builds_the_backbone_at_two_scales_and_revert_restores_every_byte(
    ultralytics_packages, tmp_path, version, stock, spec, registered
):
    unpacked = ultralytics_packages.get(version) or download_ultralytics(version)  # 8.3.60: this test's only
    environment = Environment(tmp_path, unpacked, "checkout")
    environment.path.append(str(TIMM))
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    _learned(work, spec, {"PYTHONPATH": str(TIMM)})
    name = load(work / "yolopatch.toml").popitem()[0]
    shutil.copy(environment.package / stock, work / "y.yaml")
    result = run_cli("apply", "y.yaml", "--backbone", name, "--in-place", cwd=work)
    assert result.returncode == 0, result.stderr
    # before inject: registered in memory (yolopatch's Index too, where the release has none)
    before_inject = checked(environment.yolopatch("check", "y.yaml", "--img", "128", "--json", cwd=work))
    assert before_inject["strides"] == [8, 16, 32]
    assert snapshot(environment.package) == before
    result = environment.yolopatch("inject", "--for", "y.yaml", cwd=work)
    assert result.returncode == 0, result.stderr
    assert registered in result.stdout
    for scale in ("n", "s"):
        own = checked(
            environment.yolopatch("check", "y.yaml", "--scale", scale, "--img", "128", "--json", cwd=work)
        )
        assert f"{own['params']:,} parameters" in own["reference"]  # ultralytics' own summary line
        assert own["strides"] == [8, 16, 32]
    step = environment.run("-c", ULTRALYTICS_LOSS_STEP, cwd=work)
    assert step.returncode == 0, step.stderr[-2000:]
    assert step.stdout.split()[-8:] == ["strides", "8.0", "16.0", "32.0", "loss", "finite", "grads", "all"]
    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before


@pytest.mark.exhaustive  # 25 s; the Silence rows' renumbering is tested on our yolov9-shaped yaml
def test_yolov9_c_keeps_its_silence_row_and_its_own_model_builds_the_backbone(wky_packages, tmp_path):
    """yolov9-c.yaml (yolo9 1.0.18): Silence stays row 0, the auxiliary branch reads the Index rows; the
    package's own DetectionModel builds it, its summary line agreeing with the built-in builder; revert
    byte for byte."""
    site, work = tmp_path / "site", tmp_path / "work"
    shutil.copytree(wky_packages["yolo9"], site / "yolo9")
    work.mkdir()
    env = {"PYTHONPATH": str(STUBS)}
    stock = snapshot(site / "yolo9")
    _learned(work, "backbones.py:WidthListNet")
    shutil.copy(site / "yolo9" / "models" / "detect" / "yolov9-c.yaml", work / "m.yaml")
    _ok("apply", "m.yaml", "--backbone", "WidthListNet", "--in-place", cwd=work, env=env)
    assert "   [-1, 1, Silence, []],  \n" in (work / "m.yaml").read_text()  # row 0 as it was
    builtin = json.loads(_ok("check", "m.yaml", "--img", "64", "--json", cwd=work, env=env))["model"]
    _ok("inject", str(site / "yolo9"), "--for", "m.yaml", cwd=work, env=env)
    own = json.loads(
        _ok("check", "m.yaml", "--repo", str(site / "yolo9"), "--img", "64", "--json", cwd=work, env=env)
    )
    assert own["model"]["params"] == builtin["params"]
    assert f"{builtin['params']} parameters" in own["model"]["reference"]
    _ok("inject", str(site / "yolo9"), "--revert", cwd=work, env=env)
    assert snapshot(site / "yolo9") == stock
