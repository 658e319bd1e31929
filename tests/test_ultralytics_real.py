"""inject and check on real ultralytics releases, as a git checkout and as an installed package.

For each release: check a yaml with yolopatch's operators before injecting (registered in memory only),
inject, build the yaml with ultralytics' own DetectionModel (forward and backward), check again, compare the
parameters, then revert and compare every byte of the package.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, STUBS, ULTRALYTICS_VERSIONS, run_cli, snapshot

# ultralytics' own build of each yaml named, in the environment under test: one JSON line, a report per yaml
OWN_BUILD = """
import json, sys, torch, ultralytics
from ultralytics.nn.tasks import DetectionModel

def tensors(x):
    if isinstance(x, torch.Tensor):
        return [x]
    items = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else []
    return [t for item in items for t in tensors(item)]

def build(path):
    from ultralytics.utils.torch_utils import get_flops

    model = DetectionModel(path, verbose=False)
    gflops = get_flops(model, 640)
    model.train()
    loss = sum(t.float().square().mean() for t in tensors(model(torch.randn(2, 3, 128, 128))))
    loss.backward()
    return {
        "version": ultralytics.__version__,
        "gflops": gflops,
        "params": sum(p.numel() for p in model.parameters()),
        "no_grad": [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None],
        "modules": {type(m).__name__: type(m).__module__ for m in model.model},
    }

print(json.dumps({path: build(path) for path in sys.argv[1:]}))
"""
YAMLS = {"yolov8n-ops.yaml": "cfg/models/v8/yolov8.yaml", "yolo11n-ops.yaml": "cfg/models/11/yolo11.yaml"}
# (--layers, --op, --insert): an Involution in place of a strided Conv; SE, CBAM, CoordAtt and ECA inserted
# (CoordAtt's work grows with H + W, not the area: where the releases' FLOPs conventions differ)
EDITS = [
    ("7", "involution", False),
    ("9", "se", True),
    ("4", "cbam", True),
    ("1", "coordatt", True),
    ("0", "eca", True),
]


class Environment:
    """Where ultralytics lives for one case, and how to run Python and yolopatch there."""

    def __init__(self, tmp: Path, unpacked: Path, mode: str):
        self.mode, self.settings = mode, tmp / "settings"
        if mode == "checkout":
            self.checkout = tmp / "checkout"
            shutil.copytree(unpacked / "ultralytics", self.checkout / "ultralytics")
            self.python, self.package = sys.executable, self.checkout / "ultralytics"
            self.path = [str(self.checkout), str(STUBS)]
        else:
            self.python = self._virtualenv(tmp / "env", unpacked)
            self.path = []

    def _virtualenv(self, folder: Path, unpacked: Path) -> str:
        """A virtual environment with this release in its site-packages; everything else (torch, yolopatch,
        the stand-ins) comes from the test environment, after it on sys.path."""
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
        packages = next(folder.glob("lib/python*/site-packages"), folder / "Lib" / "site-packages")
        self.package = packages / "ultralytics"
        shutil.copytree(unpacked / "ultralytics", self.package)
        lines = [str(STUBS), str(ROOT), *site.getsitepackages()]
        (packages / "yolopatch-tests.pth").write_text("\n".join(lines) + "\n")
        return str(folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python"))

    @property
    def env(self) -> dict[str, str]:
        return {
            "PYTHONPATH": os.pathsep.join(self.path),
            "YOLO_CONFIG_DIR": str(self.settings),
            "MPLCONFIGDIR": str(self.settings),
            "YOLO_OFFLINE": "True",
        }

    def run(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run(
            [self.python, *args], capture_output=True, text=True, cwd=cwd, env={**os.environ, **self.env}
        )

    def yolopatch(self, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        """inject and check as the user runs them: on the checkout, or with this environment's Python."""
        command, target = args[0], []
        if command == "inject":
            target = (
                [str(self.checkout)] if self.mode == "checkout" else ["--installed", "--python", self.python]
            )
        elif command == "check" and self.mode == "checkout":
            target = ["--repo", str(self.checkout)]
        if self.mode == "checkout":
            return run_cli(*args, *target, cwd=cwd, env=self.env)
        return self.run("-m", "yolopatch", *args, *target, cwd=cwd)

    def own_builds(self, yamls: list[str], cwd: Path) -> dict:
        process = self.run("-c", OWN_BUILD, *yamls, cwd=cwd)
        assert process.returncode == 0, process.stderr[-2000:]
        return json.loads(process.stdout.strip().splitlines()[-1])


def checked(result: subprocess.CompletedProcess) -> dict:
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)["model"]


# Every release once: the oldest and the newest installed (a virtual environment of its own), the others as a
# checkout; every other (release, place) with -m exhaustive. The package's place is what differs, and the
# oldest and newest are built and injected as checkouts below and in test_into_real (test_userop_real adds
# 8.4 installed with the user's modules).
INSTALLED = (ULTRALYTICS_VERSIONS[0], ULTRALYTICS_VERSIONS[-1])
MODES = [
    pytest.param(version, mode, marks=[pytest.mark.exhaustive] if exhaustive else [], id=f"{version}-{mode}")
    for version in ULTRALYTICS_VERSIONS
    for mode in ("checkout", "installed")
    for exhaustive in [(mode == "installed") != (version in INSTALLED)]
]


@pytest.mark.parametrize(("version", "mode"), MODES)
def test_inject_build_check_revert(ultralytics_packages, tmp_path, version, mode):
    environment = Environment(tmp_path, ultralytics_packages[version], mode)
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    yamls = [name for name, stock in YAMLS.items() if (environment.package / stock).is_file()]
    for name in yamls:
        shutil.copy(environment.package / YAMLS[name], work / name)
        for layers, op, insert in EDITS:
            result = run_cli(
                "apply",
                name,
                "-l",
                layers,
                "--op",
                op,
                *(["--insert"] if insert else []),
                "--in-place",
                cwd=work,
            )
            assert result.returncode == 0, result.stderr

    in_memory = {
        name: checked(environment.yolopatch("check", name, "--img", "128", "--json", cwd=work))
        for name in yamls
    }
    assert all("registered in memory" in report["warnings"][0] for report in in_memory.values())
    assert snapshot(environment.package) == before  # check edits nothing

    result = environment.yolopatch("inject", "--for", yamls[0], cwd=work)
    assert result.returncode == 0, result.stderr
    kind = {"checkout": "package folder", "installed": "installed package"}[mode]  # no .git: a copy
    assert f"{environment.package}: ultralytics {version} ({kind})" in result.stdout
    assert environment.yolopatch("inject", "--for", yamls[0], "--check", cwd=work).returncode == 0

    own_builds = environment.own_builds(yamls, work)
    for name in yamls:
        own = own_builds[name]
        assert own["version"] == version and not own["no_grad"]
        assert own["modules"]["CBAM"] == "ultralytics.nn.modules.yolopatch"  # ours, not ultralytics' CBAM
        assert {"Involution", "SE"} <= set(own["modules"])
        report = checked(environment.yolopatch("check", name, "--img", "128", "--json", cwd=work))
        assert report["params"] == own["params"] == in_memory[name]["params"]
        assert f"{own['params']:,}" in report["reference"] or f" {own['params']} " in report["reference"]
        # one layers figure: the release's own count (leaf modules from about 8.3.100, every module before)
        layers = report["modules"]
        assert f"{layers:,} layers" in report["reference"] or f"{layers} layers" in report["reference"]
        assert report["builder"].startswith(f"ultralytics {version} at ")
        # exactly ultralytics' own GFLOPs (its get_flops, which its summary rounds) plus the operators' work
        assert report["gflops"] - report["uncounted_gflops"] == pytest.approx(
            own["gflops"], rel=1e-12, abs=1e-12
        )

    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before


@pytest.mark.parametrize("version", ["8.1.0", "8.4.190"])
def test_check_export_onnx_as_ultralytics_exports(ultralytics_packages, tmp_path, version):
    """A yaml with every operator, exported by check --export onnx the way ultralytics' exporter does
    (fused, heads in export mode, legacy exporter, dynamic axes), matches eager at another batch and size."""
    environment = Environment(tmp_path, ultralytics_packages[version], "checkout")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(environment.package / YAMLS["yolov8n-ops.yaml"], work / "yolov8n-ops.yaml")
    for layers, op, insert in [*EDITS, ("2", "simam", True)]:
        args = [
            "apply",
            "yolov8n-ops.yaml",
            "-l",
            layers,
            "--op",
            op,
            "--in-place",
            *(["--insert"] if insert else []),
        ]
        assert run_cli(*args, cwd=work).returncode == 0
    result = environment.yolopatch(
        "check", "yolov8n-ops.yaml", "--img", "128", "--export", "onnx", "--json", cwd=work
    )
    exported = checked(result)["export"]
    assert exported["exporter"].startswith("torch.onnx.export (legacy, dynamo=False)")
    assert [p["shape"] for p in exported["parity"]] == [[1, 3, 128, 128], [2, 3, 64, 64]]
    assert all(p["max_rel"] <= 1e-4 for p in exported["parity"])


OWN_FUSED = """
import json, sys, logging
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils.torch_utils import model_info

logging.getLogger("ultralytics").setLevel(logging.WARNING)
out = {}
for path in sys.argv[1:]:
    model = DetectionModel(path, verbose=False).eval().fuse(verbose=False)
    layers, params, _, gflops = model_info(model, verbose=True)
    out[path] = [layers, params, gflops]
print(json.dumps(out))
"""


@pytest.mark.parametrize("version", ["8.1.0", "8.4.190"])
def test_fused_figures_and_bench_as_ultralytics_counts_them(ultralytics_packages, tmp_path, version):
    """check --fused gives the figures of ultralytics' own fused model (its layers convention, its GFLOPs);
    --bench times every model in one table, labelled."""
    environment = Environment(tmp_path, ultralytics_packages[version], "checkout")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(environment.package / YAMLS["yolov8n-ops.yaml"], work / "yolov8n.yaml")
    assert (
        run_cli(
            "apply", "yolov8n.yaml", "-l", "4,6", "--insert", "--op", "cbam", "--each", cwd=work
        ).returncode
        == 0
    )
    yamls = ["yolov8n.yaml", "yolov8n-cbam-L4.yaml", "yolov8n-cbam-L6.yaml"]
    result = environment.yolopatch(
        "check", *yamls, "--img", "64", "--fused", "--bench", "--runs", "5", "--json", cwd=work
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    assert environment.yolopatch("inject", "--for", yamls[1], cwd=work).returncode == 0  # for its own build
    process = environment.run("-c", OWN_FUSED, *yamls, cwd=work)
    assert process.returncode == 0, process.stderr[-2000:]
    own = json.loads(process.stdout.strip().splitlines()[-1])
    for name, row in zip(yamls, data["comparison"], strict=True):
        layers, params, gflops = own[name]
        assert (row["fused_layers"], row["fused_params"]) == (layers, params), name
        assert row["fused_gflops"] == pytest.approx(gflops, abs=1e-9), name  # no operator with uncounted work
        assert row["latency_q1_ms"] <= row["latency_ms"] <= row["latency_q3_ms"]
    assert data["latency_conditions"]["fused"] is True and data["latency_conditions"]["img"] == 64
