"""check: exact numbers for our examples and real YOLOv5 yamls, clear failures, rendering."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import (
    EXAMPLE,
    EXHAUSTIVE,
    ROOT,
    YOLOV5_VERSIONS,
    build_of,
    check_yaml,
    fixture_text,
    font_home,
    geometry_of,
    release_sweep,
    run_cli,
    snapshot,
)
from torch import nn

from yolopatch.build.measure import measure
from yolopatch.channels import simulate
from yolopatch.child import child_environment
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.involution import involution_macs, involution_params
from yolopatch.operators.registry import get_operator
from yolopatch.render.model import summary_line
from yolopatch.targets.checkout.target import reference_summary
from yolopatch.targets.yolov5 import target as yolov5

STUBS = Path(__file__).parent / "stubs"


def _simulation(parsed):
    return simulate(parsed.logical_rows(), geometry_of(parsed.values), parsed.name)


def _build(parsed):
    return build_of(parsed, _simulation(parsed))


def test_example_matches_yolov5s_numbers():
    report = check_yaml(EXAMPLE, "yolov5s", 256, 1)
    assert (report.modules, report.params, report.gradients) == (214, 7235389, 7235389)
    assert round(report.gflops, 1) == 16.6 and report.uncounted_gflops == 0
    assert report.strides == [8.0, 16.0, 32.0]


def test_replaced_layer_numbers_follow_the_formulas():
    patched = apply_operator(EXAMPLE, "8", ApplyOptions()).text
    base, report = check_yaml(EXAMPLE, "base", 256, 1), check_yaml(patched, "patched", 256, 1)
    c3_params = base.layers[8].params
    assert report.params == base.params - c3_params + involution_params(512, 512, 7)
    # the aggregation at 640: 7*7 offsets x 512 channels x 20x20 pixels, x2 for FLOPs
    assert report.layers[8].uncounted_gflops == pytest.approx(2 * 49 * 512 * 20 * 20 / 1e9)
    assert report.layers[8].operator == "Involution" and not report.layers[7].operator


def test_activation_key_applies_to_its_build_only():
    leaky = _build(parse_model_yaml(fixture_text("spaced.yaml")))
    plain = _build(parse_model_yaml(EXAMPLE))
    assert isinstance(leaky.model[0].act, nn.LeakyReLU) and leaky.model[0].act.negative_slope == 0.1
    assert isinstance(plain.model[0].act, nn.SiLU)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            ("[-1, 1, SPPF, [1024, 5]]", "[-1, 1, MyBlock, [1024, 5]]"), "unknown module", id="unknown"
        ),
        pytest.param(
            ("[-1, 1, SPPF, [1024, 5]]", "[-1, 1, \"__import__('os').system('touch PWNED')\", [1024]]"),
            "unknown module",
            id="code-as-module",
        ),
        pytest.param(
            ("[-1, 1, SPPF, [1024, 5]]", "[-1, 1, SPPF, [1024, \"__import__('os').system('touch PWNED')\"]]"),
            "is not a literal",
            id="code-as-argument",
        ),
        pytest.param(
            ("nc: 80", "nc: 80\nactivation: __import__('os').system('touch PWNED')"),
            "is not a torch.nn activation",
            id="code-as-activation",
        ),
        pytest.param(
            ("[[-1, 4], 1, Concat, [1]]", "[[-1, 6], 1, Concat, [1]]"),
            "layer 16 (Concat): forward pass failed",
            id="stride-mismatch-in-concat",
        ),
    ],
)
def test_failures_exit_1_with_the_layer_and_cause(tmp_path, change, message):
    path = tmp_path / "bad.yaml"
    path.write_text(EXAMPLE.replace(*change), encoding="utf-8")
    result = run_cli("check", str(path), "--img", "128", cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "PWNED").exists()


def test_unknown_module_suggests_repo():
    with pytest.raises(YolopatchError, match="--repo"):
        check_yaml(EXAMPLE.replace("SPPF", "SPPCSPC"), "m", 128, 1)


class _DropsChannels(nn.Module):
    """A blog-style Involution that ignores its output channels."""

    def forward(self, x):
        return x


def test_channel_mismatch_names_the_layer_that_receives_it():
    parsed = parse_model_yaml(EXAMPLE)
    model = _build(parsed)
    broken = _DropsChannels()
    broken.i, broken.f, broken.type = 10, -1, "Involution"
    model.model[10] = broken  # hands on 512 channels where its arguments promise 256
    with pytest.raises(YolopatchError, match=r"layer 13 \(C3\): forward pass failed .*768 channels"):
        measure(model, parsed, _simulation(parsed), 128, 1)


def test_wrong_output_size_is_caught():
    parsed = parse_model_yaml(EXAMPLE)
    model = _build(parsed)
    model.model[3].conv.stride = (1, 1)  # a layer that no longer halves the resolution its arguments promise
    with pytest.raises(
        YolopatchError,
        match=r"layer 3 \(Conv\): output is 32x32 at --img 128, but its arguments give stride 8, i.e. 16x16",
    ):
        measure(model, parsed, _simulation(parsed), 128, 1)


def test_json_output_and_baseline(tmp_path):
    patched = tmp_path / "patched.yaml"
    patched.write_text(apply_operator(EXAMPLE, "8", ApplyOptions()).text, encoding="utf-8")
    result = run_cli(
        "check", str(patched), "--img", "128", "--json", "--baseline", str(ROOT / "examples" / "yolov5s.yaml")
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["baseline"]["params"] == 7235389
    assert data["model"]["params"] == 7235389 - 1182720 + involution_params(512, 512, 7)
    assert data["model"]["layers"][8]["module"] == "Involution"


def test_replaced_yolov5s_numbers_against_the_original():
    report = check_yaml(apply_operator(EXAMPLE, "8", ApplyOptions()).text, "yolov5s-inv", 128, 1)
    base = check_yaml(EXAMPLE, "yolov5s", 128, 1)
    layer = report.layers[8]
    assert (layer.module, layer.args, layer.output, layer.params) == (
        "Involution",
        "[1024, 7, 1]",
        "[1, 512, 4, 4]",
        268064,
    )
    assert layer.gflops == pytest.approx(2 * involution_macs(512, 512, 20, 20).total / 1e9)
    assert summary_line(report, base) == (
        "yolov5s-inv summary: 203 layers (-11, -5.1%), 6320733 parameters (-914656, -12.6%), "
        "6320733 gradients (-914656, -12.6%), 15.9 GFLOPs (-0.7, -4.3%)"
    )


# YOLOv5 v7.0's model yamls: by default every architecture at its smallest scale (n; and yolov5s, which the
# comparison table needs); the larger scales of the P5, P6 and segment models (s, m, l, x: the same graphs,
# deeper and wider) with -m exhaustive
LARGER_SCALES = re.compile(r"yolov5[smlx]6?(-seg)?\.yaml")
# a child per group, each yaml at the smallest size it builds at: (img, batch); with batch 1, BatchNorm needs
# 2x2 at the largest stride, with batch 2 a 1x1 will do (the P7 model's stride 128 at --img 128)
GROUPS = {"P3-P5": (64, 1), "P6-P7": (128, 2)}


def _group(path: Path) -> str:
    return "P6-P7" if re.search(r"(6|p7)$", path.stem) else "P3-P5"


# the two yamls of the comparison table checked in the P3-P5 group, first: the table's reference is the first
COMPARED = ("yolov5n.yaml", "yolov5s.yaml")


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("group", GROUPS)
def test_every_v7_yaml_matches_yolov5s_own_model_and_summary(
    yolov5_packages, monkeypatch, tmp_path, group, exhaustive
):
    """Our builder against YOLOv5 v7.0's own Model and model_info, for every model yaml the wheel ships (the
    default run: every architecture, see LARGER_SCALES), a group per test, so parallel workers share them;
    one child builds a group with the Model: `check A.yaml B.yaml ... --repo` (one table, its JSON)."""
    monkeypatch.setenv("PYTHONPATH", str(STUBS))
    package = tmp_path / "yolov5"
    shutil.copytree(yolov5_packages["7.0.14"], package)
    files = sorted(p for p in (package / "models").rglob("*.yaml") if p.name != "anchors.yaml")
    sampled = [p for p in files if not LARGER_SCALES.fullmatch(p.name) or p.name in COMPARED]
    paths = [p for p in (files if exhaustive else sampled) if _group(p) == group]
    first = {package / "models" / name: i for i, name in enumerate(COMPARED)}
    paths.sort(key=lambda p: first.get(p, len(first)))  # stable: the compared yamls, then the rest in order
    img, batch = GROUPS[group]
    data = _with_repo(package, paths, img, batch, tmp_path)
    reports = data["models"] if len(paths) > 1 else [data["model"]]
    for path, theirs in zip(paths, reports, strict=True):
        ours = check_yaml(path.read_text(encoding="utf-8"), str(path), img, batch)
        assert (ours.params, ours.modules) == (theirs["params"], theirs["modules"]), path
        assert (
            f"{ours.modules} layers, {ours.params} parameters, {ours.gradients} gradients, {ours.gflops:.1f} GFLOPs"
            in theirs["reference"]
        ), path
    if group == "P3-P5":
        # several yamls with the checkout's own Model in one table: YOLOv5 v7.0's own counts, against the first
        rows = data["comparison"]
        assert [Path(row["model"]).name for row in rows[:2]] == list(COMPARED)
        assert [row["params"] for row in rows[:2]] == [1872157, 7235389]
        assert rows[1]["params_change"] == 7235389 - 1872157


@pytest.mark.parametrize("name", ["spaced.yaml", "master.yaml", "darknet.yaml", "p6.yaml"])
def test_fixtures_build_with_a_row_per_layer(name):
    text = fixture_text(name)
    report = check_yaml(text, name, 128, 1)
    assert [layer.index for layer in report.layers] == list(range(len(parse_model_yaml(text).layers)))
    assert report.params == sum(layer.params for layer in report.layers) > 0


SUMMARIES = [
    pytest.param(
        "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs",
        "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs",
        id="v6.1-to-v7.0",
    ),
    pytest.param(
        "YOLOv5s-inv summary: 203 layers, 6,320,733 parameters, 6,320,733 gradients, 15.9 GFLOPs\n",
        "YOLOv5s-inv summary: 203 layers, 6,320,733 parameters, 6,320,733 gradients, 15.9 GFLOPs",
        id="master-thousands-separators",
    ),
    pytest.param(
        "Model Summary: 283 layers, 7276605 parameters, 7276605 gradients, 17.2 GFLOPS",
        "Model Summary: 283 layers, 7276605 parameters, 7276605 gradients, 17.2 GFLOPS",
        id="v4.0-to-v6.0",
    ),
    pytest.param(
        "Model Summary: 283 layers, 7276605 parameters, 7276605 gradients",
        "Model Summary: 283 layers, 7276605 parameters, 7276605 gradients",
        id="no-thop",
    ),
    pytest.param("Fusing layers...\n", "", id="none"),
]


@pytest.mark.parametrize(("log", "expected"), SUMMARIES)
def test_reference_summary_reads_every_release_format(log, expected):
    assert reference_summary(log) == expected


SETTINGS = [
    pytest.param({"YOLOV5_CONFIG_DIR": "/mine"}, [], "/mine", id="variable-set-kept"),
    pytest.param({}, [".config/Ultralytics"], None, id="existing-default-used"),
    pytest.param({}, [], "SCRATCH", id="missing-default-kept-out-of-home"),
]


@pytest.mark.parametrize(("environ", "folders", "expected"), SETTINGS)
def test_child_keeps_the_users_settings_folder(tmp_path, environ, folders, expected):
    home = tmp_path / "home"
    for folder in folders:
        (home / folder).mkdir(parents=True)
    env = child_environment(environ, home, "Linux", tmp_path / "scratch", yolov5.TARGET.child_settings)
    assert env.get("YOLOV5_CONFIG_DIR") == (str(tmp_path / "scratch") if expected == "SCRATCH" else expected)
    assert env["PIP_NO_INDEX"] == "1"


# the oldest and the newest layout; the releases between with -m exhaustive
@pytest.mark.parametrize("version", release_sweep(YOLOV5_VERSIONS, ("4.0.14", "7.0.14")))
def test_check_repo_dot_from_inside_the_checkout(yolov5_packages, tmp_path, version):
    """The commands inject prints, typed with relative paths inside the checkout, on every release."""
    package = tmp_path / "site" / "yolov5"
    shutil.copytree(yolov5_packages[version], package)
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    for args in (["inject", "."], ["apply", "models/yolov5s.yaml", "-l", "8"]):
        assert run_cli(*args, cwd=package, env=env).returncode == 0
    result = run_cli(
        "check", "models/yolov5s-involution.yaml", "--repo", ".", "--img", "64", cwd=package, env=env
    )
    assert result.returncode == 0, result.stderr
    summary = next(line for line in result.stdout.splitlines() if " summary: " in line)
    assert summary.startswith("models/yolov5s-involution.yaml summary: ")  # the path as typed
    params = summary.split(" layers, ")[1].split(" parameters")[0]
    assert f"{params} parameters" in result.stdout.split("the checkout's own summary")[1]


def test_v6_0_offline_without_a_cached_font_says_what_to_do(yolov5_packages, tmp_path):
    package = tmp_path / "yolov5"
    shutil.copytree(yolov5_packages["6.0.7"], package)
    env = {"PYTHONPATH": str(STUBS), "HOME": str(tmp_path / "empty-home")}
    run_cli("inject", str(package), env=env)
    result = run_cli("check", str(package / "models" / "yolov5s.yaml"), "--repo", str(package), env=env)
    assert (
        result.returncode == 1 and "downloads Arial.ttf" in result.stderr and "Traceback" not in result.stderr
    )


FUSED_COUNT = """
import json, sys
from pathlib import Path
from yolopatch.targets.checkout.child import import_yolo
Model = import_yolo(Path(sys.argv[1])).Model
out = {}
for path in sys.argv[2:]:
    model = Model(path).fuse()
    out[path] = [len(list(model.modules())), sum(p.numel() for p in model.parameters())]
print(json.dumps(out))
"""


def test_fused_figures_equal_yolov5s_own_fused_model(yolov5_packages, tmp_path):
    """check --fused's figures, for a detect and a segment model, are those of YOLOv5's own fused Model
    (both built in one child)."""
    import subprocess
    import sys

    package = tmp_path / "yolov5"
    shutil.copytree(yolov5_packages["7.0.14"], package)
    paths = [package / "models" / name for name in ("yolov5s.yaml", "segment/yolov5s-seg.yaml")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(STUBS), str(ROOT)]),
        "YOLOV5_CONFIG_DIR": str(tmp_path),
    }
    run = subprocess.run(
        [sys.executable, "-c", FUSED_COUNT, str(package / "models"), *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    theirs = json.loads(run.stdout.strip().splitlines()[-1])
    for path in paths:
        ours = check_yaml(path.read_text(encoding="utf-8"), path.name, 64, 1, fused=True)
        assert [ours.fused_modules, ours.fused_params] == theirs[str(path)], path.name


def _with_repo(repo: Path, paths: list[Path], img: int, batch: int, cwd: Path) -> dict:
    """`check PATHS --repo REPO --json`: every yaml built by the checkout's own Model, in one child."""
    size = ["--img", str(img), "--batch", str(batch)]
    env = {"YOLOV5_CONFIG_DIR": str(cwd)}
    result = run_cli("check", *map(str, paths), "--repo", str(repo), *size, "--json", cwd=cwd, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_repo_registers_what_the_checkout_lacks_in_memory_and_writes_nothing(yolov5_packages, tmp_path):
    """`check --repo` of a yaml whose operators the checkout lacks: built by its own Model with them
    registered in memory (a note names the inject for training); the checkout's files stay as they were."""
    package = Path(shutil.copytree(yolov5_packages["7.0.14"], tmp_path / "site" / "yolov5"))
    before = snapshot(package)
    yaml = tmp_path / "m.yaml"
    yaml.write_text(apply_operator(EXAMPLE, "9", ApplyOptions(op=get_operator("se"), insert=True)).text)
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    result = run_cli("check", str(yaml), "--repo", str(package), "--img", "128", "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["model"]
    assert f"{report['params']} parameters" in report["reference"]
    (note,) = [w for w in report["warnings"] if "registered in memory" in w]
    assert (
        note.startswith("SE: registered in memory for this check only")
        and f"yolopatch inject {package}" in note
    )
    assert snapshot(package) == before
