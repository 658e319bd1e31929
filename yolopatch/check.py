"""`check`: build a model yaml, run it forward and backward, and measure it.

The yaml's target decides how (Target.check): the built-in builder, or the family's own code in a child
process. Here: the built-in builder's steps, and running a build child and reading its reports.
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
from yolopatch.targets import csp_blocks
from yolopatch.targets.base import child_environment


def check_builtin(
    text: str,
    name: str,
    img: int,
    batch: int,
    fused: bool = False,
    operators: Sequence[Operator] = (),
    classes: Mapping[str, type] | None = None,
) -> ModelReport:
    """Build with yolopatch's own blocks of the yaml's target (no checkout, no eval) and measure; with
    `fused`, also the figures after the target's own fuse(). `operators` and `classes`: the user's own operators and their adapter
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

    blocks = csp_blocks()
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
        return run_child("yolopatch.userop.build", [str(request)], "building with your operators")


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


def run_child(module: str, arguments: list[str], what: str) -> list[ModelReport | YolopatchError]:
    """Run a build child and read its report, or its error, per model."""
    return [_read_result(result) for result in child_results(module, arguments, what)]


def child_results(module: str, arguments: list[str], what: str) -> list[dict]:
    """Run a child (its last argument: where it writes a JSON list) in a scratch folder and read the list.
    The child runs elsewhere, so it is told where the user's yolopatch.toml is (their own operators)."""
    from yolopatch.userop.record import CONFIG_VARIABLE, find_config

    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "report.json"
        env = child_environment(os.environ, Path.home(), platform.system(), Path(scratch))
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
