"""Your own module on real releases: `ops add` four of our test classes (a keep block, a csp block, a
stride-2 conv, an upsampler), `apply` them, `inject` them as a module of their own with adapters, the
target's own Model builds the yaml (forward and backward), `check` agrees on parameters, revert restores
every byte. YOLOv5's pip package (v7.0) and ultralytics (a checkout copy and an installed
package)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from helpers import ROOT, STUBS, font_home, run_cli, snapshot
from test_ultralytics_real import Environment, checked
from user_module_cases import USER_MODULES

# (file, class), then the edits in order: (--layers, --op, --insert)
MODULES = [
    ("se_attention.py", "SEAttention"),
    ("csp.py", "C2fLite"),
    ("convs.py", "SPDConv"),
    ("resample.py", "DySample"),
]
EDITS = [("2", "C2fLite", False), ("9", "SEAttention", True), ("1", "SPDConv", False)]
UPSAMPLE = {"YOLOv5": "12", "ultralytics": "12"}  # the first nn.Upsample row after the insert above


@pytest.fixture(scope="session")
def record(tmp_path_factory: pytest.TempPathFactory) -> str:
    """yolopatch.toml after `ops add` of the four classes (a probe child each), probed once per run: the
    first worker that needs it writes it into the run's temporary folder, which pytest-xdist's workers share,
    under a lock; the others read it (the files are recorded by relative path, so the record holds wherever
    they are copied beside it)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder = shared / "userop-real-record"
    with FileLock(str(shared / "userop-real-record.lock")):
        if not (folder / "yolopatch.toml").is_file():
            shutil.rmtree(folder, ignore_errors=True)  # a partial one: its `ops add` failed
            folder.mkdir()
            for file, cls in MODULES:
                shutil.copy(USER_MODULES / file, folder / file)
                result = run_cli("ops", "add", f"{file}:{cls}", cwd=folder)
                assert result.returncode == 0, result.stderr
    return (folder / "yolopatch.toml").read_text(encoding="utf-8")


def _learn(work: Path, record: str) -> None:
    for file, _ in MODULES:
        shutil.copy(USER_MODULES / file, work / file)
    (work / "yolopatch.toml").write_text(record, encoding="utf-8")


def _apply(work: Path, name: str, family: str, insert_at: str = "9") -> None:
    for layers, op, insert in [*EDITS[:1], (insert_at, "SEAttention", True), *EDITS[2:]]:
        result = run_cli(
            "apply", name, "-l", layers, "--op", op, *(["--insert"] if insert else []), "--in-place", cwd=work
        )
        assert result.returncode == 0, result.stderr
    result = run_cli("apply", name, "-l", UPSAMPLE[family], "--op", "DySample", "--in-place", cwd=work)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("version", ["7.0.14"])  # the other collection shapes: test_userop_inject.py
def test_yolov5_own_model_builds_users_modules_and_revert_restores_every_byte(
    yolov5_packages, tmp_path, version, record
):
    package = tmp_path / "site" / "yolov5"
    shutil.copytree(yolov5_packages[version], package)
    before = snapshot(package)
    work = tmp_path / "work"
    work.mkdir()
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    _learn(work, record)
    (work / "m.yaml").write_text((ROOT / "examples" / "yolov5s.yaml").read_text(encoding="utf-8"))
    _apply(work, "m.yaml", "YOLOv5")

    builtin = run_cli("check", "m.yaml", "--img", "128", "--json", cwd=work, env=env)
    assert builtin.returncode == 0, builtin.stderr
    result = run_cli("inject", str(package), "--for", "m.yaml", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (package / "models").glob("yolopatch_*.py")) == [
        "yolopatch_convs.py",
        "yolopatch_csp.py",
        "yolopatch_resample.py",
        "yolopatch_se_attention.py",
    ]
    again = run_cli("inject", str(package), "--for", "m.yaml", cwd=work, env=env)
    assert again.returncode == 0 and "already injected" in again.stderr

    own = run_cli("check", "m.yaml", "--repo", str(package), "--img", "128", "--json", cwd=work, env=env)
    assert own.returncode == 0, own.stderr
    report, expected = json.loads(own.stdout)["model"], json.loads(builtin.stdout)["model"]
    assert report["params"] == expected["params"]
    assert f"{report['params']} parameters" in report["reference"]  # YOLOv5's own summary line
    marked = {layer["module"] for layer in report["layers"] if layer["operator"]}
    assert marked == {"SEAttention", "C2fLite", "SPDConv", "DySample"}

    result = run_cli("inject", str(package), "--revert", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(package) == before


@pytest.mark.parametrize(
    ("version", "mode"),
    [pytest.param("8.3.253", "checkout", marks=pytest.mark.exhaustive), ("8.4.190", "installed")],
)
def test_ultralytics_own_model_builds_users_modules_and_revert_restores_every_byte(
    ultralytics_packages, tmp_path, version, mode, record
):
    environment = Environment(tmp_path, ultralytics_packages[version], mode)
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    _learn(work, record)
    shutil.copy(environment.package / "cfg/models/11/yolo11.yaml", work / "yolo11n-mine.yaml")
    _apply(work, "yolo11n-mine.yaml", "ultralytics", insert_at="10")

    in_memory = checked(
        environment.yolopatch("check", "yolo11n-mine.yaml", "--img", "128", "--json", cwd=work)
    )
    assert "registered in memory" in in_memory["warnings"][0]
    assert snapshot(environment.package) == before

    result = environment.yolopatch("inject", "--for", "yolo11n-mine.yaml", cwd=work)
    assert result.returncode == 0, result.stderr
    own = environment.own_builds(["yolo11n-mine.yaml"], work)["yolo11n-mine.yaml"]
    assert own["version"] == version and not own["no_grad"]
    adapters = {"SEAttention", "C2fLite", "SPDConv", "DySample"}
    assert {own["modules"][name] for name in adapters} == {"ultralytics.nn.modules.yolopatch"}
    for scale in ("n", "s"):
        report = checked(
            environment.yolopatch(
                "check", "yolo11n-mine.yaml", "--scale", scale, "--img", "128", "--json", cwd=work
            )
        )
        if scale == "n":
            assert report["params"] == own["params"] == in_memory["params"]
        assert f"{report['params']:,} parameters" in report["reference"]

    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before
