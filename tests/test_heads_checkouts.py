"""Detection heads in checkouts (#30): YOLOv5 (v4.0 to v7.0), YOLOv7 (IDetect) and YOLOv9 (DDetect).
`ops add` of a subclass of the family's own head (a plain copy refused with the fix), `apply --layers Detect`
proved before anything is written, `inject` pasting the head into yolo.py before parse_model and adding it
to parse_model's own head test (YOLOv5 v6.2 on: `m in {Detect, Segment}`; v4.0 to v6.1: `m is Detect`,
which becomes a set and comes back on revert; YOLOv7's list, YOLOv9's set), the family's own Model building
it with its strides and one step of its own loss, `check --repo` agreeing, revert restoring every byte.

Our own heads (tests/fixtures/user_modules/heads_yolov5.py, heads_yolov7.py, heads_yolov9.py).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import STUBS, font_home, release_sweep, run_cli, snapshot
from user_module_case import USER_MODULES

from yolopatch.splice import splice
from yolopatch.targets.checkout.heads import DetectSite, detect_site, registration, unregistration

HEADS = USER_MODULES / "heads_yolov5.py"
DETECT_ROW = "[[17, 20, 23], 1, Detect, [nc, anchors]]"


def _parse_model(test: str) -> str:
    return textwrap.dedent(
        f"""\
        def parse_model(d, ch):
            for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
                if m in {{Conv, C3}}:
                    c1, c2 = ch[f], args[0]
                {test}
                    args.append([ch[x] for x in f])
        """
    )


def _site(text: str) -> DetectSite:
    site = detect_site(ast.parse(text).body[0], "Detect")  # type: ignore[arg-type]
    assert site is not None
    return site


REGISTRATIONS = [
    pytest.param("elif m is Detect:", ["H"], "elif m in {Detect, H}:", id="is-form-becomes-a-set"),
    pytest.param("elif m in {Detect, Segment}:", ["H"], "elif m in {Detect, Segment, H}:", id="set-form"),
    pytest.param("elif m is Detect:", ["H", "K"], "elif m in {Detect, H, K}:", id="two-heads"),
]


@pytest.mark.parametrize(("test", "names", "expected"), REGISTRATIONS)
def test_a_head_is_added_to_parse_models_own_detect_test_and_revert_restores_it(test, names, expected):
    text = _parse_model(test)
    added = splice(text, registration(text, _site(text), "Detect", names))
    assert added == text.replace(test, expected)
    assert registration(added, _site(added), "Detect", names) == []  # applying twice equals applying once
    assert splice(added, unregistration(added, _site(added), "Detect", names)) == text


def test_removing_one_of_two_heads_keeps_the_set():
    text = _parse_model("elif m in {Detect, H, K}:")
    assert "elif m in {Detect, K}:" in splice(text, unregistration(text, _site(text), "Detect", ["H"]))


def test_a_branch_without_the_inputs_channels_is_no_detect_site():
    text = _parse_model("elif m is Detect:").replace("args.append([ch[x] for x in f])", "c2 = ch[f]")
    assert detect_site(ast.parse(text).body[0], "Detect") is None  # type: ignore[arg-type]


@pytest.fixture
def work(tmp_path, yolov5_packages):
    """A folder with heads_yolov5.py, YOLOv5 7.0.14's package beside it as `yolov5`, and its yolov5s.yaml."""
    shutil.copytree(yolov5_packages["7.0.14"], tmp_path / "yolov5")
    shutil.copy(HEADS, tmp_path / "heads_yolov5.py")
    shutil.copy(tmp_path / "yolov5" / "models" / "yolov5s.yaml", tmp_path / "y.yaml")
    return tmp_path


@pytest.fixture
def env(tmp_path):
    return {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}


def test_a_detect_subclass_is_learned_as_a_head_and_a_plain_copy_is_refused_with_the_fix(work, env):
    added = run_cli("ops", "add", "heads_yolov5.py:ScaledDetect", "--repo", "yolov5", cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    assert "head (its Detect base, read from the source)" in added.stdout
    assert "--layers Detect --op ScaledDetect" in added.stdout
    refused = run_cli("ops", "add", "heads_yolov5.py:CopiedDetect", "--repo", "yolov5", cwd=work, env=env)
    assert refused.returncode == 1
    assert "a plain copy (not a subclass of the target's Detect)" in refused.stderr
    assert (
        "YOLOv5: `from models.yolo import Detect`, and keep its m convolutions (anchors x (nc + 5) outputs "
        "per level); YOLOv7: `from models.yolo import IDetect`" in refused.stderr
    )
    assert "ultralytics" not in refused.stderr  # the family the file imports: its fix only


def test_a_head_needing_a_package_that_is_not_installed_is_named_when_it_is_added(work, env):
    (work / "mm.py").write_text(
        "import mmcv\nfrom models.yolo import Detect\n\n\nclass MMDetect(Detect):\n    pass\n"
    )
    result = run_cli("ops", "add", "mm.py:MMDetect", "--repo", "yolov5", cwd=work, env=env)
    assert result.returncode == 1
    assert "mm.py:1 needs the package mmcv, which is not installed for" in result.stderr


def test_a_head_whose_eval_output_is_not_detects_is_refused_before_anything_is_written(work, env):
    before = snapshot(work / "yolov5")
    added = run_cli("ops", "add", "heads_yolov5.py:BareEvalDetect", "--repo", "yolov5", cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    applied = run_cli("apply", "y.yaml", "--layers", "Detect", "--op", "BareEvalDetect", cwd=work, env=env)
    injected = run_cli("inject", "yolov5", "--op", "BareEvalDetect", cwd=work, env=env)
    for result in (applied, injected):
        assert result.returncode == 1, result.stdout
        assert "error: BareEvalDetect not proven, nothing written: " in result.stderr
        assert (
            "BareEvalDetect's eval output has shapes (1, 6); the checkout's own Detect gives" in result.stderr
        )
    assert not (work / "y-bareevaldetect.yaml").exists()
    assert snapshot(work / "yolov5") == before


BUILD = """
import sys
import torch
sys.path.insert(0, {root!r})
from yolov5.models.yolo import Detect, Model
from yolov5.utils import loss as own

model = Model("y.yaml", ch=3)
head = model.model[-1]
assert type(head).__name__ == "ScaledDetect" and isinstance(head, Detect)
assert model.stride.tolist() == [8.0, 16.0, 32.0], model.stride
model.hyp = {{"box": 0.05, "cls": 0.5, "cls_pw": 1.0, "obj": 1.0, "obj_pw": 1.0, "anchor_t": 4.0,
              "fl_gamma": 0.0, "label_smoothing": 0.0}}
model.gr, model.nc = 1.0, head.nc
targets = torch.tensor([[0.0, 1.0, 0.5, 0.5, 0.2, 0.3], [1.0, 2.0, 0.4, 0.6, 0.3, 0.2]])
if hasattr(own, "ComputeLoss"):
    loss, _ = own.ComputeLoss(model)(model(torch.rand(2, 3, 64, 64)), targets)
else:  # v4.0: its loss does not run with this torch, with its own Detect either
    loss = model(torch.rand(2, 3, 64, 64))[0].sum()
loss.sum().backward()
assert torch.isfinite(loss).all() and head.scales.grad is not None
print("ok")
"""


# sampled: 7.0.14's set form; the `m is Detect` form of 4.0.14 and 6.1.8 with -m exhaustive (the registration
# of both forms is table-tested above)
@pytest.mark.parametrize("version", release_sweep(["4.0.14", "6.1.8", "7.0.14"], ["7.0.14"]))
def test_yolov5s_own_model_builds_and_trains_the_head_and_revert_restores_every_byte(
    tmp_path, yolov5_packages, env, version
):
    site = tmp_path / "site"
    package = site / "yolov5"
    shutil.copytree(yolov5_packages[version], package)
    before = snapshot(package)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(HEADS, work / "heads_yolov5.py")
    shutil.copy(package / "models" / "yolov5s.yaml", work / "y.yaml")
    added = run_cli("ops", "add", "heads_yolov5.py:ScaledDetect", "--repo", str(package), cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    stock = (work / "y.yaml").read_text()
    assert DETECT_ROW in stock

    result = run_cli("inject", str(package), "--op", "ScaledDetect", "--check", cwd=work, env=env)
    assert result.returncode == 1 and "ScaledDetect proved with the YOLOv5 checkout" in result.stderr
    result = run_cli("inject", str(package), "--op", "ScaledDetect", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    yolo = (package / "models" / "yolo.py").read_text()
    expected = (
        "elif m in {Detect, Segment, ScaledDetect}:"
        if version == "7.0.14"
        else "m in {Detect, ScaledDetect}:"
    )
    assert expected in yolo
    assert yolo.index("# >>> yolopatch") < yolo.index("def parse_model(")
    assert not list((package / "models").glob("yolopatch_*.py"))  # pasted into yolo.py, no module of its own
    injected = snapshot(package)
    again = run_cli("inject", str(package), "--op", "ScaledDetect", cwd=work, env=env)
    assert again.returncode == 0 and snapshot(package) == injected

    result = run_cli(
        "apply", "y.yaml", "--layers", "Detect", "--op", "ScaledDetect", "--in-place", cwd=work, env=env
    )
    assert result.returncode == 0, result.stderr
    assert (work / "y.yaml").read_text() == stock.replace(
        DETECT_ROW, DETECT_ROW.replace("Detect,", "ScaledDetect,")
    )
    (work / "build.py").write_text(BUILD.format(root=str(site)))
    built = run_cli("check", "y.yaml", "--repo", str(package), "--img", "128", "--json", cwd=work, env=env)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)["model"]
    assert f"{report['params']} parameters" in report["reference"]  # YOLOv5's own summary line agrees
    trained = subprocess.run(
        [sys.executable, "build.py"], cwd=work, env={**os.environ, **env}, capture_output=True, text=True
    )
    assert trained.returncode == 0 and "ok" in trained.stdout, trained.stderr[-2000:]

    result = run_cli("inject", str(package), "--revert", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(package) == before


def test_in_a_clone_yolo_py_run_as_a_script_builds_the_pasted_head(tmp_path, yolov5_packages, env):
    """A clone's layout (`from models.common import *`: the 7.0.14 package with its imports made a
    checkout's): `python models/yolo.py --cfg` runs yolo.py as __main__, whose own Detect the pasted head
    subclasses, and builds it; revert restores every byte."""
    clone = Path(shutil.copytree(yolov5_packages["7.0.14"], tmp_path / "yolov5"))
    for path in clone.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        path.write_text(re.sub(r"^(\s*)(from|import) yolov5\.", r"\1\2 ", text, flags=re.M), encoding="utf-8")
    before = snapshot(clone)
    shutil.copy(HEADS, tmp_path / "heads_yolov5.py")
    shutil.copy(clone / "models" / "yolov5s.yaml", tmp_path / "y.yaml")
    assert (
        run_cli(
            "ops", "add", "heads_yolov5.py:ScaledDetect", "--repo", "yolov5", cwd=tmp_path, env=env
        ).returncode
        == 0
    )
    result = run_cli(
        "apply", "y.yaml", "--layers", "Detect", "--op", "ScaledDetect", "--in-place", cwd=tmp_path, env=env
    )
    assert result.returncode == 0 and "ScaledDetect proved with the YOLOv5 checkout yolov5" in result.stderr
    result = run_cli("inject", "yolov5", "--for", "y.yaml", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    script = subprocess.run(
        [sys.executable, "models/yolo.py", "--cfg", str(tmp_path / "y.yaml")],
        cwd=clone,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0, script.stderr[-2000:]
    assert "7235392 parameters" in script.stdout + script.stderr  # yolov5s and the three scales
    assert run_cli("inject", "yolov5", "--revert", cwd=tmp_path, env=env).returncode == 0
    assert snapshot(clone) == before


WKY_HEADS = [
    pytest.param(
        "yolov7-checkout", "cfg/training/yolov7-tiny.yaml", "IDetect", "heads_yolov7.py", id="yolov7"
    ),
    pytest.param("yolo9", "models/detect/gelan-t.yaml", "DDetect", "heads_yolov9.py", id="yolov9"),
]


@pytest.mark.parametrize(("tree", "stock", "base", "file"), WKY_HEADS)
def test_yolov7_and_yolov9_heads_are_registered_in_their_own_head_test(
    tmp_path, wky_packages, env, tree, stock, base, file
):
    """A subclass of YOLOv7's IDetect or YOLOv9's DDetect: proved (the checkout's own Model, its own loss:
    utils/loss.py, utils/loss_tal.py), injected into the family's own head test, `check --repo` agreeing
    with the family's summary line, revert byte for byte."""
    repo = tmp_path / "site" / tree
    shutil.copytree(wky_packages[tree], repo)
    before = snapshot(repo)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(USER_MODULES / file, work / file)
    shutil.copy(repo / stock, work / "y.yaml")
    name = f"Scaled{base}"
    added = run_cli("ops", "add", f"{file}:{name}", "--repo", str(repo), cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    assert f"head (its {base} base, read from the source)" in added.stdout
    result = run_cli("inject", str(repo), "--op", name, cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{name} proved with the " in result.stderr and "one step of its own loss finite" in result.stderr
    assert f"added {name} to parse_model's own {base} test" in result.stdout
    result = run_cli("apply", "y.yaml", "--layers", base, "--op", name, "--in-place", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    built = run_cli("check", "y.yaml", "--repo", str(repo), "--img", "64", "--json", cwd=work, env=env)
    assert built.returncode == 0, built.stderr
    report = json.loads(built.stdout)["model"]
    assert f"{report['params']} parameters" in report["reference"]
    assert any(layer["module"] == name for layer in report["layers"])
    result = run_cli("inject", str(repo), "--revert", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(repo) == before
