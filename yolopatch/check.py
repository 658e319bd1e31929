"""`check`: build a model yaml, run it forward and backward, and measure it.

YOLOv5 yamls: the built-in builder by default; with a checkout, that checkout's own Model class in a child
process. ultralytics yamls: ultralytics' own model classes (installed, or a checkout's) in a child process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from yolopatch.errors import YolopatchError
from yolopatch.report import LayerReport, ModelReport

if TYPE_CHECKING:
    from yolopatch.bench import Conditions, Latency
    from yolopatch.export import ExportReport
    from yolopatch.operators.spec import Operator
from yolopatch.targets import ultralytics, yolov5


def check_builtin(
    text: str,
    name: str,
    img: int,
    batch: int,
    fused: bool = False,
    operators: Sequence[Operator] = (),
    classes: Mapping[str, type] | None = None,
) -> ModelReport:
    """Build with yolopatch's own YOLOv5 v7.0 blocks (no checkout, no eval) and measure; with `fused`, also
    the figures after YOLOv5's fuse(). `operators` and `classes`: the user's own operators and their adapter
    classes (only in the child of `check_with_users`)."""
    import dataclasses

    from yolopatch.builder import build_model
    from yolopatch.channels import geometry, simulate
    from yolopatch.measure import fused_figures, measure
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(text, name)
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values, "", operators), name)
    repeats = frozenset(op.name for op in operators if op.repeats)
    model = build_model(parsed, simulation, classes, repeats, operators)
    report = measure(model, parsed, simulation, img, batch, operators=operators)
    if not fused:
        return report
    figures = fused_figures(model, report.uncounted_gflops)
    return dataclasses.replace(
        report, fused_modules=figures.modules, fused_params=figures.params, fused_gflops=figures.gflops
    )


def users_in(text: str, name: str, operators: Sequence[Operator]) -> list[Operator]:
    """The user's operators a yaml uses, on their own or inside a CSP block (`--into`)."""
    from yolopatch.csp import split_variant
    from yolopatch.modelyaml import parse_model_yaml

    blocks = {**yolov5.CSP, **ultralytics.CSP}
    used = {layer.module for layer in parse_model_yaml(text, name).layers}
    inside = {parts[1] for m in used if (parts := split_variant(m, blocks, [op.name for op in operators]))}
    return [op for op in operators if op.name in used | inside]


def check_with_users(
    models: Sequence[tuple[str, str]], img: int, batch: int, fused: bool, operators: Sequence[Operator]
) -> list[ModelReport | YolopatchError]:
    """check_builtin on each (text, name) in a child that imports the user's files (never this process)."""
    used = sorted({op.name for text, name in models for op in users_in(text, name, operators)})
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as folder:
        request = Path(folder) / "request.json"
        data = {"models": list(models), "used": used}
        request.write_text(json.dumps({**data, "img": img, "batch": batch, "fused": fused}), encoding="utf-8")
        return _run_child("yolopatch.userop.build", [str(request)], "building with your operators")


def bench_builtin(
    models: Sequence[tuple[str, str]], img: int, batch: int, device: str, half: bool, fused: bool, runs: int
) -> tuple[Conditions, dict[str, Latency]]:
    """Build each (yaml text, name) with the built-in builder (fused where asked) and time them in turns."""
    from yolopatch.bench import bench_on_device
    from yolopatch.builder import build_model
    from yolopatch.channels import geometry, simulate
    from yolopatch.modelyaml import parse_model_yaml

    built = {}
    for text, name in models:
        parsed = parse_model_yaml(text, name)
        model = build_model(parsed, simulate(parsed.logical_rows(), geometry(parsed.values), name)).eval()
        built[name] = model.fuse() if fused else model
    try:
        return bench_on_device(built, img, batch, device, half, fused, runs)
    except (ValueError, RuntimeError) as exc:  # no such device, fp16 on a CPU
        raise YolopatchError(f"--bench on {device}: {exc}") from None


def export_builtin(text: str, name: str, img: int, batch: int, fmt: str) -> ExportReport:
    """Build with the built-in builder and export it as a deployment would (see yolopatch.export)."""
    from yolopatch.builder import build_model
    from yolopatch.channels import geometry, simulate
    from yolopatch.export import export_model
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(text, name)
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values), name)
    model = build_model(parsed, simulation)
    multiple = int(model.stride.max()) if model.stride.numel() else 32
    names = [layer.module for layer in parsed.layers]
    try:
        return export_model(model, fmt, (batch, 3, img, img), multiple, names)
    except YolopatchError as exc:
        raise YolopatchError(f"{name}: --export {fmt}: {exc}") from None


def check_with_repo(repo: Path, yaml_path: Path, img: int, batch: int) -> ModelReport:
    """Build with the checkout's own Model class in a child process and measure."""
    (result,) = check_many_with_repo(repo, [yaml_path], img, batch)
    if isinstance(result, YolopatchError):
        raise result
    return result


def check_many_with_repo(
    repo: Path, yaml_paths: Sequence[Path], img: int, batch: int
) -> list[ModelReport | YolopatchError]:
    """Build each yaml with the checkout's own Model class, all in one child process (torch and the
    checkout imported once), and measure: a report, or the error, per yaml."""
    # the child runs in a scratch folder: every path the user typed is resolved here, where they typed it
    models = yolov5.find_checkout(repo).models.resolve()
    pairs = [str(p) for path in yaml_paths for p in (path.resolve(), path)]
    arguments = [str(models), str(img), str(batch), *pairs]
    return _run_child("yolopatch.repo_build", arguments, f"{models}: building with the checkout")


def check_ultralytics(
    repo: Path | None,
    yaml_path: Path,
    scale: str | None,
    img: int,
    batch: int,
    export: str | None = None,
    fused: bool = False,
) -> ModelReport:
    """Build with ultralytics' own model classes (the installed package, or a checkout's) in a child
    process, with yolopatch's operators registered in memory where the package lacks them, and measure;
    with `export`, also export the model as ultralytics' exporter does (yolopatch.export); with `fused`,
    the figures after ultralytics' fuse()."""
    arguments = [_ultralytics_root(repo), str(yaml_path.resolve()), str(yaml_path), scale or "-", str(img)]
    arguments += [str(batch), export or "-", "1" if fused else "0"]
    (result,) = _run_child("yolopatch.ultralytics_build", arguments, "building with ultralytics")
    if isinstance(result, YolopatchError):
        raise result
    return result


def bench_ultralytics(
    repo: Path | None,
    yaml_paths: Sequence[Path],
    scale: str | None,
    img: int,
    batch: int,
    timing: tuple[str, bool, int],
    fused: bool,
) -> tuple[Conditions, dict[str, Latency]]:
    """Time the yamls with ultralytics' own model classes, all built in one child so they run in turns."""
    from yolopatch.bench import Conditions, Latency

    device, half, runs = timing
    pairs = [str(p) for path in yaml_paths for p in (path.resolve(), path)]
    arguments = ["--bench", _ultralytics_root(repo), scale or "-", str(img), str(batch), device]
    arguments += ["1" if half else "0", "1" if fused else "0", str(runs), *pairs]
    (result,) = _child_results("yolopatch.ultralytics_build", arguments, "timing with ultralytics")
    if "error" in result:
        raise YolopatchError(result["error"])
    latencies = {name: Latency(**value) for name, value in result["latencies"].items()}
    return Conditions(**result["conditions"]), latencies


def _ultralytics_root(repo: Path | None) -> str:
    """The folder holding the ultralytics to build with ("-": the installed one)."""
    if repo is None:
        return "-"
    package = ultralytics.find_package(repo)
    if package is None:
        raise YolopatchError(
            f"{repo}: not an ultralytics checkout: found no ultralytics/nn/tasks.py. Pass the checkout's "
            "root folder, or leave out --repo to use the installed ultralytics."
        )
    return str(package.root.parent.resolve())


def _run_child(module: str, arguments: list[str], what: str) -> list[ModelReport | YolopatchError]:
    """Run a build child and read its report, or its error, per model."""
    return [_read_result(result) for result in _child_results(module, arguments, what)]


def _child_results(module: str, arguments: list[str], what: str) -> list[dict]:
    """Run a child (its last argument: where it writes a JSON list) in a scratch folder and read the list.
    The child runs elsewhere, so it is told where the user's yolopatch.toml is (their own operators)."""
    from yolopatch.userop.record import CONFIG_VARIABLE, find_config

    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "report.json"
        env = yolov5.child_environment(os.environ, Path.home(), platform.system(), Path(scratch))
        config = find_config(Path.cwd())
        if config is not None:
            env[CONFIG_VARIABLE] = str(config)
        command = [sys.executable, "-m", module, *arguments, str(out)]
        process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch)
        if not out.exists():
            tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
            raise YolopatchError(f"{what} crashed: {' | '.join(tail)}")
        return json.loads(out.read_text(encoding="utf-8"))


def _read_result(result: dict) -> ModelReport | YolopatchError:
    if "error" in result:
        return YolopatchError(result["error"])
    report = result["report"]
    exported = report.get("export")
    return ModelReport(
        **{
            **report,
            "layers": [LayerReport(**layer) for layer in report["layers"]],
            "export": _export_report(exported) if exported else None,
        }
    )


def _export_report(data: dict) -> ExportReport:
    from yolopatch.export import report_from_dict

    return report_from_dict(data)
