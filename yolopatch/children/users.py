"""Child process for `check` (built-in builder) on a yaml that uses the user's own operators: the built-in builder with
their adapter classes registered, so the user's code never runs inside the CLI process.

    python -m yolopatch.children.users REQUEST.json OUT.json

REQUEST.json: {"target": its name, "models": [[text, name], ...], "used": [names], "img", "batch", "fused"}; the record is the
one its parent names in YOLOPATCH_CONFIG. OUT.json
gets one entry per model: {"report": ...} or {"error": ...}, as the other build children write.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.errors import YolopatchError
from yolopatch.userop.record import UserOp


def user_module(op: UserOp) -> Any:
    """The user's file imported as a module of its own (`yolopatch_user_<stem>`)."""
    name = f"yolopatch_user_{op.file.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, op.file)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)  # type: ignore[union-attr]
    except Exception as exc:  # the user's code may raise anything
        del sys.modules[name]
        hint = (
            "; it imports a checkout's code, which the built-in builder does not have: check the model with "
            "--repo PATH/TO/checkout (after `yolopatch inject`)"
            if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in ("models", "utils")
            else ""
        )
        raise YolopatchError(f"{op.file}: importing it failed: {type(exc).__name__}: {exc}{hint}") from None
    return module


def adapter_classes(ops: Sequence[UserOp]) -> dict[str, type]:
    """Each operator's adapter class, built on the user's class as `inject` writes it."""
    from yolopatch.userop.adapter import adapter_source

    classes = {}
    for op in ops:
        timm = op.backbone is not None and op.backbone.factory == "timm"  # no file of the user's
        base = object if timm else getattr(user_module(op), op.cls, None)
        if base is None:
            raise YolopatchError(f"{op.file}: defines no {op.cls} any more; run `yolopatch ops add` again.")
        namespace: dict[str, Any] = {"_Base": base, "nn": importlib.import_module("torch.nn")}
        exec(compile(adapter_source(op, "_Base"), f"<yolopatch adapter {op.name}>", "exec"), namespace)
        classes[op.name] = namespace[op.name]
    return classes


def _at_an_odd_size(
    target: Any, report: Any, text: str, operators: Sequence[Any], classes: Mapping[str, type]
) -> Any:
    """Your module also runs forward and backward where the deepest maps have an odd size (640 + 32: 21x21 at
    stride 32), where a block that needs even sizes (space-to-depth) or rounds differently breaks."""
    from yolopatch.build.check import check_builtin

    stride = int(max(report.strides, default=32))
    size = report.img + stride if (report.img // stride) % 2 == 0 else report.img
    try:
        check_builtin(target, text, report.name, size, 1, False, operators, classes)
    except YolopatchError as exc:
        raise YolopatchError(
            f"{exc} (yolopatch also runs models with your operators at {size}x{size}, where the deepest maps have "
            "odd sizes, as rectangular and multi-scale training give them)"
        ) from None
    note = f"your operators also ran forward and backward at {size}x{size} (maps of odd size at stride {stride}): ok"
    return dataclasses.replace(report, warnings=[*report.warnings, note])


def _format_check(request: Mapping[str, Any], ops: Sequence[UserOp], classes: Mapping[str, type]) -> dict:
    """A model file of another format (a darknet cfg) built by its format's builder, the user's operators with
    their adapter classes."""
    from yolopatch.formats.registry import format_named
    from yolopatch.userop.adapter import as_operator

    [(text, name)] = request["models"]
    users = {op.name: (as_operator(op), classes[op.name]) for op in ops if op.name in classes}
    try:
        report = format_named(request["format"]).check(text, name, request["img"], request["batch"], users)
    except YolopatchError as exc:
        return {"error": str(exc)}
    return {"report": dataclasses.asdict(report)}


def main(argv: list[str]) -> None:
    from yolopatch.userop.adapter import as_operator
    from yolopatch.userop.record import child_config, load

    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    results: list[dict[str, Any]]
    try:
        ops = list(load(child_config()).values())
        classes = adapter_classes([op for op in ops if op.name in request["used"]])
        operators = [as_operator(op) for op in ops]
    except YolopatchError as exc:
        results = [{"error": str(exc)} for _ in request["models"]]
    else:
        results = (
            [_format_check(request, ops, classes)]
            if "format" in request
            else [_builtin_check(request, text, name, operators, classes) for text, name in request["models"]]
        )
    child.write(Path(argv[1]), results)


def _builtin_check(
    request: Mapping[str, Any], text: str, name: str, operators: Sequence[Any], classes: Mapping[str, type]
) -> dict[str, Any]:
    """A yaml built by its target's built-in builder with the user's operators (and at an odd size too)."""
    from yolopatch.build.check import check_builtin
    from yolopatch.targets.registry import target_named

    try:
        target = target_named(request["target"])
        report = check_builtin(
            target, text, name, request["img"], request["batch"], request["fused"], operators, classes
        )
        report = _at_an_odd_size(target, report, text, operators, classes)
    except YolopatchError as exc:
        return {"error": str(exc)}
    return {"report": dataclasses.asdict(report)}


if __name__ == "__main__":
    main(sys.argv[1:])
