"""`--into` on a real ultralytics release: every built-in operator into the C2f rows of yolov8 and the C3k2
rows of yolo11, injected, built by ultralytics' own DetectionModel (scale n; and m, where parse_model turns
C3k2's C3k blocks on), forward and backward at two sizes. The parameters must equal the stock model's with
each bottleneck's slot filled by the operator, counted here from the stock model and the operator alone;
every bottleneck must hold one; `check` agrees; revert restores every byte. YOLOv5's own Model builds C3
variants in test_into.py's built-in twin and here with v7.0.14."""

from __future__ import annotations

import json
import shutil

import pytest
from helpers import EXHAUSTIVE, ROOT, STUBS, font_home, run_cli, snapshot
from test_ultralytics_real import Environment, checked

from yolopatch.operators.registry import OPERATORS

# Builds each (stock yaml, patched yaml, scale, operator, slot) with ultralytics' own DetectionModel and
# counts what the patched one must have, from the stock model and the operator's template class alone.
INDEPENDENT = """
import importlib, json, sys, torch, yaml
from ultralytics.nn.tasks import DetectionModel
from ultralytics.nn.modules.block import Bottleneck

def build(path, scale):
    config = yaml.safe_load(open(path))
    return DetectionModel({**config, "scale": scale}, verbose=False)

def count(module):
    return sum(p.numel() for p in module.parameters())

def tensors(x):
    if isinstance(x, torch.Tensor):
        return [x]
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]

stocks = {}  # (stock yaml, scale) -> its model, built once: only counted, never run
results = []
for stock_path, patched_path, scale, template, name, slot in json.loads(sys.argv[1]):
    cls = getattr(importlib.import_module(f"yolopatch.templates.{template}"), name)
    if (stock_path, scale) not in stocks:
        stocks[stock_path, scale] = build(stock_path, scale)
    stock, patched = stocks[stock_path, scale], build(patched_path, scale)
    expected, slots = count(stock), 0
    for a, b in zip(stock.model, patched.model):
        if type(b).__name__ == f"{type(a).__name__}_{name}":
            for bottleneck in [m for m in a.m.modules() if isinstance(m, Bottleneck)]:
                conv = bottleneck.cv2.conv
                c_in = conv.out_channels if slot == "keep" else conv.in_channels
                expected += count(cls(c_in, conv.out_channels))
                expected -= count(bottleneck.cv2) if slot == "conv" else 0
                slots += 1
    patched.train()
    for size in (64, 96):
        patched.zero_grad()
        sum(t.float().square().mean() for t in tensors(patched(torch.randn(2, 3, size, size)))).backward()
    results.append({
        "params": count(patched),
        "expected": expected,
        "slots": slots,
        "inside": sum(type(m).__name__ == name for m in patched.modules()),
        "no_grad": [n for n, p in patched.named_parameters() if p.requires_grad and p.grad is None],
        "c3k": sum(type(m).__name__ == "C3k" for m in patched.modules()),
    })
print(json.dumps(results))
"""
CSP = {"C2f": ("cfg/models/v8/yolov8.yaml", "yolov8n"), "C3k2": ("cfg/models/11/yolo11.yaml", "yolo11n")}
SLOTS = {"involution": "conv"}


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
def test_every_operator_into_c2f_and_c3k2_built_by_ultralytics_own_model(
    ultralytics_packages, tmp_path, exhaustive
):
    """Each operator into C2f (yolov8) and C3k2 (yolo11), built by ultralytics' own model with the parameters
    computed independently. The default run puts the registry's operators into the two blocks in turn
    (Involution and CBAM into C3k2, also at scale m); -m exhaustive puts every operator into both."""
    environment = Environment(tmp_path, ultralytics_packages["8.4.190"], "checkout")
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    jobs = []
    for turn, (csp, (stock, stem)) in enumerate(reversed(CSP.items())):
        shutil.copy(environment.package / stock, work / f"{stem}.yaml")
        every = list(OPERATORS.items())
        for key, op in every if exhaustive else every[turn % 2 :: 2]:
            result = run_cli("apply", f"{stem}.yaml", "-l", csp, "--op", key, "--into", csp, cwd=work)
            assert result.returncode == 0, result.stderr
            patched = f"{stem}-{csp.lower()}_{key}.yaml"
            scales = ["n", "m"] if csp == "C3k2" and key in ("cbam", "involution") else ["n"]
            for scale in scales:
                jobs.append([f"{stem}.yaml", patched, scale, op.template, op.name, SLOTS.get(key, "keep")])
            result = environment.yolopatch("inject", "--for", patched, cwd=work)
            assert result.returncode == 0, result.stderr
    process = environment.run("-c", INDEPENDENT, json.dumps(jobs), cwd=work)
    assert process.returncode == 0, process.stderr[-2000:]
    for job, built in zip(jobs, json.loads(process.stdout.strip().splitlines()[-1]), strict=True):
        assert built["params"] == built["expected"], job
        assert built["inside"] == built["slots"] > 0 and not built["no_grad"], job
        if job[2] == "m" and job[1].startswith("yolo11"):
            assert built["c3k"] > 0, job  # parse_model's C3k2 rule reached the variant
    report = checked(
        environment.yolopatch(
            "check", "yolo11n-c3k2_cbam.yaml", "--scale", "m", "--img", "64", "--json", cwd=work
        )
    )
    expected = next(
        b
        for j, b in zip(jobs, json.loads(process.stdout.strip().splitlines()[-1]), strict=True)
        if j[1] == "yolo11n-c3k2_cbam.yaml" and j[2] == "m"
    )
    assert report["params"] == expected["params"]
    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before


def test_yolov5_own_model_builds_c3_variants_with_the_builtin_builders_count(yolov5_packages, tmp_path):
    package = tmp_path / "site" / "yolov5"
    shutil.copytree(yolov5_packages["7.0.14"], package)
    before = snapshot(package)
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    (tmp_path / "m.yaml").write_text((ROOT / "examples" / "yolov5s.yaml").read_text(encoding="utf-8"))
    assert (
        run_cli(
            "apply", "m.yaml", "-l", "C3", "--op", "involution", "--into", "C3", "--in-place", cwd=tmp_path
        ).returncode
        == 0
    )
    assert run_cli("inject", str(package), "--for", "m.yaml", cwd=tmp_path, env=env).returncode == 0
    own = run_cli("check", "m.yaml", "--repo", str(package), "--img", "64", "--json", cwd=tmp_path, env=env)
    builtin = run_cli("check", "m.yaml", "--img", "64", "--json", cwd=tmp_path, env=env)
    assert own.returncode == 0 and builtin.returncode == 0, own.stderr + builtin.stderr
    assert json.loads(own.stdout)["model"]["params"] == json.loads(builtin.stdout)["model"]["params"]
    assert run_cli("inject", str(package), "--revert", cwd=tmp_path, env=env).returncode == 0
    assert snapshot(package) == before
