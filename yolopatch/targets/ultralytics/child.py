"""Child process for `check` on an ultralytics yaml: build it with ultralytics' own code and measure it.

    python -m yolopatch.targets.ultralytics.child ROOT MODEL.yaml NAME SCALE IMG BATCH OUT.json

ROOT is the folder holding the `ultralytics` package of a checkout (`-`: the installed one); SCALE `-` picks
the scale the file name implies, as ultralytics does. MODEL.yaml is absolute (the child runs in a scratch
folder); NAME is the path as the user typed it.

Operators the installed copy does not register yet are registered in memory only: the module file inject
would write is executed as `ultralytics.nn.modules.yolopatch`, and parse_model is recompiled from the
source inject would write, in tasks.py's own namespace. No file is edited.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
import re
import sys
import types
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.build.measure import FLOPS_SIZE
from yolopatch.errors import YolopatchError
from yolopatch.shell import shell_word
from yolopatch.targets.ultralytics.heads import prove_heads

_MODELS = {
    "detect": "DetectionModel",
    "segment": "SegmentationModel",
    "pose": "PoseModel",
    "obb": "OBBModel",
    "classify": "ClassificationModel",
}


def import_tasks(root: str) -> types.ModuleType:
    if root != "-":
        sys.path.insert(0, root)
    try:
        import ultralytics.nn.tasks as tasks
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] != "ultralytics":
            raise YolopatchError(f"importing ultralytics failed: {exc}. Install what it needs.") from None
        where = f"{root} holds no ultralytics package" if root != "-" else "ultralytics is not installed"
        raise YolopatchError(
            f"{where}: install it (`{sys.executable} -m pip install ultralytics`) or pass a checkout with "
            "--repo PATH/TO/ultralytics."
        ) from None
    except Exception as exc:  # ultralytics' own import failure, whatever it is
        raise YolopatchError(f"importing ultralytics failed: {type(exc).__name__}: {exc}") from None
    return tasks


def register_in_memory(tasks: types.ModuleType, names: set[str], yaml: str, place: str) -> list[str]:
    """Register the operators the yaml uses, as inject would, without writing a file; notes on what was done
    (the operators this ultralytics lacks, and the inject that adds them for training: `place` names it)."""
    from yolopatch.csp import operators_used
    from yolopatch.operators.index import INDEX  # a backbone's Index rows, where this release has none
    from yolopatch.operators.registry import OPERATORS
    from yolopatch.targets.ultralytics.edits import injected_names, plan_inject
    from yolopatch.targets.ultralytics.package import MODULE, Package, read_package
    from yolopatch.targets.ultralytics.tables import CSP
    from yolopatch.userop.adapter import recorded_operators

    operators = operators_used(names, [*OPERATORS.values(), *recorded_operators(), INDEX], CSP)
    package = Package(Path(str(tasks.__file__)).parent.parent)
    if not operators:
        return []
    plan = plan_inject(package, read_package(package), operators)
    if not plan.changed:
        return []
    new = {change.path: change.new for change in plan.changes}
    for change in plan.changes:  # the users' modules first: our module file imports from them
        if change.path.name.startswith("yolopatch_") and change.new is not None:
            copy = types.ModuleType(f"ultralytics.nn.modules.{change.path.stem}")
            copy.__file__, copy.__package__ = str(change.path), "ultralytics.nn.modules"
            sys.modules[copy.__name__] = copy
            exec(compile(change.new, str(change.path), "exec"), copy.__dict__)
    module = types.ModuleType(MODULE)
    module.__file__, module.__package__ = str(package.module), "ultralytics.nn.modules"
    exec(compile(new[package.module] or "", str(package.module), "exec"), module.__dict__)
    sys.modules[MODULE] = module
    tree = ast.parse(new[package.tasks] or "")
    parse_model = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "parse_model")
    exec(
        compile(ast.Module(body=[parse_model], type_ignores=[]), str(tasks.__file__), "exec"), tasks.__dict__
    )
    operators = [op for op in operators if op.backbone != "index" or not hasattr(tasks, "Index")]
    for op in operators:  # (the release's own Index stays)
        setattr(tasks, op.name, getattr(module, op.name))
    lacking = [op.name for op in operators if op.name not in injected_names(package)]
    return [
        f"{', '.join(lacking)}: registered in memory for this check only; ultralytics at {package.root} does "
        f"not have them (`yolopatch inject {place} --for {shell_word(yaml)}` adds them for training)."
    ]


def model_config(tasks: types.ModuleType, text: str, path: Path, scale: str) -> dict[str, Any]:
    """The yaml as ultralytics' model classes take it, at the scale given or the one its name implies."""
    import yaml

    config = yaml.safe_load(text.lstrip("\ufeff"))
    scales = config.get("scales") or {}
    chosen = scale if scale != "-" else tasks.guess_model_scale(path) or next(iter(scales), "")
    # passing a dict: ultralytics' own loader would prefer a stock yaml of the same unified name
    return {**config, "scale": str(chosen), "yaml_file": str(path)}


@dataclasses.dataclass(frozen=True)
class _Built:
    model: Any
    parsed: Any
    simulation: Any
    notes: list[str]
    scale: str


def _build(root: str, yaml_path: Path, name: str, scale: str) -> _Built:
    """The yaml built by this ultralytics' own model class, operators it lacks registered in memory."""
    from yolopatch.channels import geometry, simulate, unknown_module
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.targets.ultralytics.tables import RULES
    from yolopatch.userop.adapter import recorded_operators

    text = read_text(yaml_path)
    parsed = parse_model_yaml(text, name)
    tasks = import_tasks(root)
    place = "--installed" if root == "-" else shell_word(root)
    notes = register_in_memory(tasks, {layer.module for layer in parsed.layers}, name, place)
    config = model_config(tasks, text, yaml_path, scale)
    chosen = config["scale"] if parsed.values.get("scales") else ""
    simulation = simulate(
        parsed.logical_rows(), geometry(parsed.values, RULES, chosen, recorded_operators()), name
    )
    task = tasks.guess_model_task(config)
    try:
        model = getattr(tasks, _MODELS.get(task, "DetectionModel"))(config, ch=3, verbose=False)
    except Exception as exc:
        unknown = unknown_module(
            parsed, simulation.geometry.rules, exc, "--installed" if root == "-" else root
        )
        if unknown is not None:
            raise YolopatchError(unknown) from None
        raise YolopatchError(
            f"{name}: ultralytics' own model class failed to build it: {type(exc).__name__}: {exc}"
        ) from None
    prove_heads(model, config, name)
    return _Built(model, parsed, simulation, notes, chosen)


def build_and_measure(
    root: str,
    yaml_path: Path,
    name: str,
    scale: str,
    img: int,
    batch: int,
    export: str = "-",
    fused: bool = False,
) -> dict:
    from yolopatch.build.measure import measure
    from yolopatch.userop.adapter import recorded_operators

    built = _build(root, yaml_path, name, scale)
    model, parsed, simulation, notes, chosen = (
        built.model,
        built.parsed,
        built.simulation,
        built.notes,
        built.scale,
    )
    reference, own_gflops = _own_summary(model)
    report = measure(
        model,
        dataclasses.replace(parsed, name=f"{name} (scale {chosen})" if chosen else name),
        simulation,
        img,
        batch,
        counts_at_full_size(),
        recorded_operators(),
    )
    import ultralytics

    owner = f"ultralytics {ultralytics.__version__}"
    report = dataclasses.replace(
        report,
        warnings=[*notes, *report.warnings],
        reference=reference,
        reference_by=owner,
        builder=f"{owner} at {Path(str(ultralytics.__file__)).parent}",
    )
    if own_gflops:  # the model's total exactly as this release counts it, plus the work thop cannot see
        report = dataclasses.replace(report, gflops=own_gflops + report.uncounted_gflops)
    report = _in_its_own_layer_count(report, model, ultralytics.__version__)
    if fused:
        report = _with_fused_figures(report, model)
    result = dataclasses.asdict(report)
    if export != "-":
        result["export"] = dataclasses.asdict(_export(model, export, img, batch, parsed))
    return result


def _export(model: Any, fmt: str, img: int, batch: int, parsed: Any) -> Any:
    """Export as ultralytics' own exporter prepares the model (eval, fused, heads in export mode with dynamic
    shapes; ONNX through the legacy exporter, `dynamo=False`, as it calls torch.onnx.export)."""

    from yolopatch.build.export import export_model

    ready = _fused(model)
    for m in ready.modules():
        if hasattr(m, "export") and hasattr(m, "dynamic"):  # Detect and its subclasses, RTDETRDecoder
            m.export, m.dynamic, m.format = True, True, fmt
    multiple = int(max(ready.stride.tolist())) if hasattr(ready, "stride") else 32
    names = [layer.module for layer in parsed.layers]
    try:
        return export_model(ready, fmt, (batch, 3, img, img), multiple, names, legacy_onnx=True)
    except YolopatchError as exc:
        raise YolopatchError(f"{parsed.name}: --export {fmt}: {exc}") from None


def _fused(model: Any) -> Any:
    """A fused copy, as ultralytics fuses for val and export (Conv + BN, RepConv and the like)."""
    import copy

    ready = copy.deepcopy(model).eval()
    return ready.fuse(verbose=False) if hasattr(ready, "fuse") else ready


def _with_fused_figures(report: Any, model: Any) -> Any:
    """The fused figures as this release's own model_info counts them (its layers convention, its GFLOPs),
    plus the operators' work thop cannot see."""
    from ultralytics.utils import torch_utils

    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.WARNING)  # its summary line is not needed, only the figures it returns
    try:
        layers, params, _gradients, gflops = torch_utils.model_info(_fused(model), verbose=True)
    finally:
        logger.setLevel(level)
    return dataclasses.replace(
        report, fused_modules=layers, fused_params=params, fused_gflops=gflops + report.uncounted_gflops
    )


def _in_its_own_layer_count(report: Any, model: Any, version: str) -> Any:
    """The layers figure as this release's own summary counts it (newer releases count leaf modules, older
    ones every module, as YOLOv5 does), with the other count named, so the two summary lines agree."""
    match = re.search(r"([\d,]+) layers", report.reference)
    theirs = int(match.group(1).replace(",", "")) if match else report.modules
    if theirs == report.modules:
        return report
    leaves = sum(1 for m in model.modules() if next(m.children(), None) is None)
    how = "leaf modules" if theirs == leaves else "layers"
    note = f"{how}, as ultralytics {version} counts them; {report.modules} modules in all, as YOLOv5 counts"
    return dataclasses.replace(report, modules=theirs, layers_note=note)


def _own_gflops(model: Any) -> float:
    """This release's own get_flops at 640 (what its summary line rounds; model.info() computes it, and this
    is for when info() did not): 8.1 to 8.3 count at the largest
    stride and scale up, 8.4 extrapolates from stride-sized proxies. Its per-layer counts are not exposed, so
    the table's rows stay thop's count of each layer; operators whose work does not grow with the area
    (CoordAtt's pooled rows) are where a row sum and the total differ. 0.0 when the release cannot count."""
    from ultralytics.utils import torch_utils

    try:
        return float(torch_utils.get_flops(model, FLOPS_SIZE))
    except Exception:  # the release's own counter failing is not the check failing
        return 0.0


def counts_at_full_size() -> bool:
    """Whether this release's get_flops has thop count at the full image size (8.4: `thop.profile(...,
    stride=...)`, exact) rather than at the largest stride, scaled up (8.1 to 8.3)."""
    import inspect

    from ultralytics.utils import torch_utils

    tree = ast.parse(inspect.getsource(torch_utils.get_flops))
    return any(
        isinstance(node, ast.Call)
        and ast.unparse(node.func) == "thop.profile"
        and any(keyword.arg == "stride" for keyword in node.keywords)
        for node in ast.walk(tree)
    )


def _own_summary(model: Any) -> tuple[str, float]:
    """The summary line ultralytics' own model.info() logs (its GFLOPs from thop, without the operators'),
    and the GFLOPs its get_flops computed for it at 640, unrounded (0.0 when it could not count)."""
    from ultralytics.utils import torch_utils

    lines: list[str] = []
    counted: list[float] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("ultralytics")
    level = logger.level
    own_get_flops = torch_utils.get_flops

    def recording(*args: Any, **kwargs: Any) -> Any:  # model.info() counts once; keep its figure
        value = own_get_flops(*args, **kwargs)
        counted.append(value)
        return value

    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    torch_utils.get_flops = recording
    try:
        model.info(verbose=True)
    finally:
        torch_utils.get_flops = own_get_flops
        logger.removeHandler(handler)
        logger.setLevel(level)
    summary = next((line.strip() for line in lines if " summary" in line), "")
    return summary, float(counted[0]) if counted else _own_gflops(model)


def bench(argv: list[str]) -> dict[str, Any]:
    """--bench: every yaml built here, in one process, so that the models are timed in turns."""
    from yolopatch.build.bench import bench_on_device

    root, scale, img, batch, device, half, fused, runs, *pairs = argv
    models = {}
    for yaml_path, name in zip(pairs[::2], pairs[1::2], strict=True):
        built = _build(root, Path(yaml_path), name, scale)
        label = f"{name} (scale {built.scale})" if built.scale else name
        models[label] = _fused(built.model) if fused == "1" else built.model.eval()
    try:
        conditions, latencies = bench_on_device(
            models, int(img), int(batch), device, half == "1", fused == "1", int(runs)
        )
    except (ValueError, RuntimeError) as exc:
        raise YolopatchError(f"--bench on {device}: {exc}") from None
    return {
        "conditions": dataclasses.asdict(conditions),
        "latencies": {k: dataclasses.asdict(v) for k, v in latencies.items()},
    }


def main(argv: list[str]) -> None:
    result: dict[str, Any]
    if argv[0] == "--bench":
        *arguments, out = argv[1:]
        try:
            result = bench(arguments)
        except YolopatchError as exc:
            result = {"error": str(exc)}
        child.write(Path(out), [result])
        return
    root, yaml_path, name, scale, img, batch, export, fused, out = argv
    try:
        report = build_and_measure(
            root, Path(yaml_path), name, scale, int(img), int(batch), export, fused == "1"
        )
        result = {"report": report}
    except YolopatchError as exc:
        result = {"error": str(exc)}
    child.write(Path(out), [result])


if __name__ == "__main__":
    main(sys.argv[1:])
