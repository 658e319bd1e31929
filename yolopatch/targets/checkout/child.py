"""Child process for `check --repo`: build yamls with a checkout's own Model class and measure them.

    python -m yolopatch.targets.checkout.child FAMILY MODELS_DIR IMG BATCH MODEL.yaml NAME [MODEL.yaml NAME ...] OUT.json

FAMILY is the family's target module (for its parse_model tables); MODELS_DIR and each MODEL.yaml are
absolute (the child runs in a scratch folder); NAME is the yaml path as the user typed it, for the report
and messages. Several yamls share one child: torch and the checkout are imported once.

It runs in its own process because importing a checkout puts its folders on sys.path, sets YOLOv5's
global state (Conv.default_act, logging, settings) and may shadow other packages named `models`/`utils`.
OUT.json gets one entry per yaml, its report or its error; each report carries the summary line the
checkout printed while building that model (its output is captured per model, then passed on).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.abc
import importlib.util
import io
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from urllib.error import URLError

from yolopatch import child
from yolopatch.errors import YolopatchError
from yolopatch.targets.checkout.layout import imports_as_package
from yolopatch.targets.checkout.proof import prove_heads


def import_yolo(models: Path):
    """models/yolo.py as its checkout imports it: `models.yolo`, or `yolov5.models.yolo` for the pip package."""
    tree = ast.parse(models.joinpath("yolo.py").read_text(encoding="utf-8"))
    package = models.parent
    absolute = imports_as_package(tree, models)
    sys.path.insert(0, str(package.parent if absolute else package))
    return importlib.import_module(f"{package.name}.models.yolo" if absolute else "models.yolo")


def load_yolo(models: Path):
    """The checkout's yolo module; its own import failure, whatever it is, as a YolopatchError."""
    try:
        return import_yolo(models)
    except Exception as exc:
        raise YolopatchError(
            f"{models}: importing its yolo.py failed: {type(exc).__name__}: {exc}{_offline_hint(exc)}"
        ) from None


def build_and_measure(yolo, yaml_path: Path, name: str, img: int, batch: int, family: Any) -> dict:
    from yolopatch.build.measure import measure
    from yolopatch.channels import geometry, simulate, unknown_module
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.targets.checkout.target import reference_summary

    parsed = parse_model_yaml(read_text(yaml_path), name)
    from yolopatch.userop.adapter import recorded_operators

    operators = recorded_operators()
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values, family.rules, "", operators), name)
    with captured_output() as log:
        try:
            model = yolo.Model(str(yaml_path), ch=3)
        except Exception as exc:
            unknown = unknown_module(
                parsed, simulation.geometry.rules, exc, str(Path(yolo.__file__).parents[1])
            )
            raise YolopatchError(
                unknown
                or f"{name}: the checkout's own Model failed to build it: {type(exc).__name__}: {exc}."
            ) from None
    print(log.getvalue(), end="")
    with captured_output():  # the stock model it is compared with prints its own summary
        notes = prove_heads(yolo, model, yaml_path, name, family.layout)
    report = dataclasses.asdict(measure(model, parsed, simulation, img, batch, operators=operators))
    return {
        **report,
        "reference": reference_summary(log.getvalue()),
        "warnings": [*notes, *report["warnings"]],
    }


class _Planned(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports the checkout's files as inject would write them: a file it plans to change or create is
    compiled from the planned text, under its own path (nothing is written)."""

    def __init__(self, texts: dict[Path, str]) -> None:
        self.texts = {path.resolve(): text for path, text in texts.items()}
        self.leaves = {path.name for path in self.texts}  # every other import is passed on at once

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        leaf = fullname.rpartition(".")[2] + ".py"
        if leaf not in self.leaves:
            return None
        for folder in path if path is not None else sys.path:
            candidate = (Path(folder or ".") / leaf).resolve()
            if candidate in self.texts:
                return importlib.util.spec_from_file_location(fullname, candidate, loader=self)
        return None

    def create_module(self, spec: Any) -> None:
        return None

    def exec_module(self, module: Any) -> None:
        path = Path(module.__file__)
        exec(compile(self.texts[path.resolve()], str(path), "exec"), module.__dict__)


def register_in_memory(family: Any, models: Path, yamls: list[str], place: str) -> list[str]:
    """The operators the yamls use that the checkout lacks, registered as inject would without writing a
    file (`_Planned`); notes saying so, and which inject adds them for training (`place` names the checkout)."""
    from yolopatch.csp import operators_used
    from yolopatch.files import read_text
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.operators.index import INDEX
    from yolopatch.operators.registry import OPERATORS
    from yolopatch.targets.checkout.edits import injected_names, plan_inject
    from yolopatch.targets.checkout.layout import locate_checkout, read_checkout
    from yolopatch.userop.adapter import recorded_operators

    checkout = locate_checkout(models, family.layout)
    if checkout is None:
        return []
    texts = read_checkout(checkout)
    names: set[str] = set()
    for path in yamls:
        try:
            names |= {layer.module for layer in parse_model_yaml(read_text(Path(path)), path).layers}
        except YolopatchError:
            continue  # its own build reports it
    known = [*OPERATORS.values(), *recorded_operators(), INDEX]
    have = set(injected_names(checkout, texts))
    lacking = [op for op in operators_used(names, known, family.rules.csp) if op.name not in have]
    if not lacking:
        return []
    plan = plan_inject(checkout, texts, lacking)
    sys.meta_path.insert(
        0, _Planned({c.path: c.new for c in plan.changes if c.changed and c.new is not None})
    )
    listed = ", ".join(op.name for op in lacking)
    return [
        f"{listed}: registered in memory for this check only; the checkout at {place} does not have them "
        f"(`yolopatch inject {place}` adds them for training)."
    ]


@contextmanager
def captured_output() -> Iterator[io.StringIO]:
    """What the checkout prints or logs meanwhile (print, or a logging handler made at its import), in one
    buffer, so each model's summary line is told apart from the next one's."""
    buffer = io.StringIO()
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in list(logging.root.manager.loggerDict))]
    handlers = {
        h for logger in loggers for h in logger.handlers if type(h) is logging.StreamHandler
    }  # not FileHandlers: they are StreamHandler subclasses that own their file
    previous = {h: h.setStream(buffer) for h in handlers}
    try:
        with redirect_stdout(buffer), redirect_stderr(buffer):
            yield buffer
    finally:
        for handler, stream in previous.items():
            handler.setStream(stream)


def _offline_hint(exc: Exception) -> str:
    """YOLOv5 v6.0 and v6.1 download Arial.ttf into their settings folder when they are imported."""
    if not isinstance(exc, URLError):
        return ""
    return (
        ". This YOLOv5 release downloads Arial.ttf into its settings folder when imported; put Arial.ttf "
        "into the folder YOLOV5_CONFIG_DIR names (default ~/.config/Ultralytics) or run once online"
    )


def default_activations(yolo) -> dict[type, Any]:
    """The classes' `default_act` as imported. A yaml's `activation:` sets it for the whole process (YOLOv5
    v7.0's and YOLOv9's Conv, YOLOv9's RepConvN), so each later yaml would get it too."""
    classes = {v for v in vars(yolo).values() if isinstance(v, type) and "default_act" in vars(v)}
    return {cls: vars(cls)["default_act"] for cls in classes}


def restore(activations: dict[type, Any]) -> None:
    for cls, act in activations.items():
        setattr(cls, "default_act", act)  # noqa: B010 (the attribute is the family's, unknown to the type)


def main(argv: list[str]) -> None:
    family, models, img, batch, *pairs, out = argv
    # the family's target module, named by the parent (a child may import any family; the parent imports none)
    target = importlib.import_module(family).TARGET
    # v4.0 to v6.0 log their summary line at INFO level without configuring logging themselves
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    results: list[dict[str, Any]] = []
    try:
        notes = register_in_memory(target, Path(models), pairs[::2], str(Path(models).parent))
        yolo = load_yolo(Path(models))
    except YolopatchError as exc:
        results = [{"error": str(exc)}] * (len(pairs) // 2)
    else:
        activations = default_activations(yolo)
        for yaml_path, name in zip(pairs[::2], pairs[1::2], strict=True):
            restore(activations)
            try:
                report = build_and_measure(yolo, Path(yaml_path), name, int(img), int(batch), target)
                results.append({"report": {**report, "warnings": [*notes, *report["warnings"]]}})
            except YolopatchError as exc:
                results.append({"error": str(exc)})
    child.write(Path(out), results)


if __name__ == "__main__":
    main(sys.argv[1:])
