"""`check` with the built-in builder: build a model yaml, run it forward and backward, and measure it.

The yaml's target decides how a yaml is checked (Target.check) and tells these functions what to build
with (its tables and blocks); they never look a target up.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from yolopatch import child
from yolopatch.channels import geometry, simulate
from yolopatch.csp import CspBlock, split_variant
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import ModelYaml, parse_model_yaml
from yolopatch.report import ModelReport
from yolopatch.userop.record import find_config

if TYPE_CHECKING:
    from yolopatch.build.builder import BuiltModel
    from yolopatch.operators.spec import Operator
    from yolopatch.report import Conditions, ExportReport, Latency
    from yolopatch.targets.base import Target

# The child that builds models with the user's operators (it imports their files; this process never does).
USERS_CHILD = "yolopatch.children.users"


def _built(
    target: Target,
    text: str,
    name: str,
    operators: Sequence[Operator] = (),
    classes: Mapping[str, type] | None = None,
) -> tuple[ModelYaml, BuiltModel, object]:
    from yolopatch.build.builder import build_model

    builtin = target.builtin()
    if builtin is None:
        raise YolopatchError(
            f"{name}: yolopatch has no built-in blocks for {target.name}; build it with {target.name}'s own code."
        )
    parsed = parse_model_yaml(text, name)
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values, target.rules, "", operators), name)
    repeats = frozenset(op.name for op in operators if op.repeats)
    return parsed, build_model(parsed, simulation, builtin, classes, repeats, operators), simulation


def check_builtin(
    target: Target,
    text: str,
    name: str,
    img: int,
    batch: int,
    fused: bool = False,
    operators: Sequence[Operator] = (),
    classes: Mapping[str, type] | None = None,
) -> ModelReport:
    """Build with yolopatch's own blocks of `target` (no checkout, no eval) and measure; with `fused`, also
    the figures after the target's own fuse(). `operators` and `classes`: the user's own operators and their
    adapter classes (only in the child of `check_with_users`)."""
    from yolopatch.build.measure import fused_figures, measure

    parsed, model, simulation = _built(target, text, name, operators, classes)
    report = measure(model, parsed, simulation, img, batch, operators=operators)  # type: ignore[arg-type]
    if not fused:
        return report
    figures = fused_figures(model, report.uncounted_gflops)
    return dataclasses.replace(
        report, fused_modules=figures.modules, fused_params=figures.params, fused_gflops=figures.gflops
    )


def users_in(
    text: str, name: str, operators: Sequence[Operator], blocks: Mapping[str, CspBlock]
) -> list[Operator]:
    """The user's operators a yaml uses, on their own or inside one of the CSP `blocks` (`--into`)."""
    used = {layer.module for layer in parse_model_yaml(text, name).layers}
    inside = {parts[1] for m in used if (parts := split_variant(m, blocks, [op.name for op in operators]))}
    return [op for op in operators if op.name in used | inside]


def check_with_users(
    target: Target,
    models: Sequence[tuple[str, str]],
    img: int,
    batch: int,
    fused: bool,
    operators: Sequence[Operator],
) -> list[ModelReport | YolopatchError]:
    """check_builtin on each (text, name) in a child that imports the user's files (never this process)."""
    used = sorted(
        {op.name for text, name in models for op in users_in(text, name, operators, target.rules.csp)}
    )
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as folder:
        request = Path(folder) / "request.json"
        data = {"target": target.name, "models": list(models), "used": used}
        request.write_text(json.dumps({**data, "img": img, "batch": batch, "fused": fused}), encoding="utf-8")
        value = child.call(
            USERS_CHILD,
            [str(request)],
            "building with your operators",
            config=find_config(Path.cwd()),
            settings=target.child_settings,
        )
        return child.reports(value)


def check_format_with_users(
    fmt_name: str, text: str, name: str, img: int, batch: int, used: Sequence[Operator]
) -> ModelReport:
    """A model file of another format that uses the user's operators, built with the format's own builder
    in the child that imports the user's files."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as folder:
        request = Path(folder) / "request.json"
        data = {"format": fmt_name, "models": [[text, name]], "used": sorted(op.name for op in used)}
        request.write_text(json.dumps({**data, "img": img, "batch": batch, "fused": False}), encoding="utf-8")
        value = child.call(
            USERS_CHILD, [str(request)], "building with your operators", config=find_config(Path.cwd())
        )
    (result,) = child.reports(value)
    if isinstance(result, YolopatchError):
        raise result
    return result


def bench_builtin(
    target: Target,
    models: Sequence[tuple[str, str]],
    img: int,
    batch: int,
    device: str,
    half: bool,
    fused: bool,
    runs: int,
) -> tuple[Conditions, dict[str, Latency]]:
    """Build each (yaml text, name) with the built-in builder (fused where asked) and time them in turns."""
    from yolopatch.build.bench import bench_on_device

    built = {}
    for text, name in models:
        model = _built(target, text, name)[1].eval()
        built[name] = model.fuse() if fused else model
    try:
        return bench_on_device(built, img, batch, device, half, fused, runs)
    except (ValueError, RuntimeError) as exc:  # no such device, fp16 on a CPU
        raise YolopatchError(f"--bench on {device}: {exc}") from None


def export_builtin(target: Target, text: str, name: str, img: int, batch: int, fmt: str) -> ExportReport:
    """Build with the built-in builder and export it as a deployment would (see yolopatch.build.export)."""
    from yolopatch.build.export import export_model

    parsed, model, _ = _built(target, text, name)
    multiple = int(model.stride.max()) if model.stride.numel() else 32
    names = [layer.module for layer in parsed.layers]
    try:
        return export_model(model, fmt, (batch, 3, img, img), multiple, names)
    except YolopatchError as exc:
        raise YolopatchError(f"{name}: --export {fmt}: {exc}") from None
