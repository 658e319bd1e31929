"""Child process for `check --repo`: build a yaml with a checkout's own Model class and measure it.

    python -m yolopatch.repo_build MODELS_DIR MODEL.yaml NAME IMG BATCH OUT.json

MODELS_DIR and MODEL.yaml are absolute (the child runs in a scratch folder); NAME is the yaml path as the
user typed it, for the report and messages.

It runs in its own process because importing a checkout puts its folders on sys.path, sets YOLOv5's
global state (Conv.default_act, logging, settings) and may shadow other packages named `models`/`utils`.
The result, or the error, goes to OUT.json; YOLOv5's own log stays on stdout/stderr.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.error import URLError

from yolopatch.errors import YolopatchError


def import_yolo(models: Path):
    """models/yolo.py as its checkout imports it: `models.yolo`, or `yolov5.models.yolo` for the pip package."""
    from yolopatch.targets.yolov5 import imports_as_package

    tree = ast.parse(models.joinpath("yolo.py").read_text(encoding="utf-8"))
    package = models.parent
    absolute = imports_as_package(tree, models)
    sys.path.insert(0, str(package.parent if absolute else package))
    return importlib.import_module(f"{package.name}.models.yolo" if absolute else "models.yolo")


def build_and_measure(models: Path, yaml_path: Path, name: str, img: int, batch: int) -> dict:
    from yolopatch.channels import geometry, simulate
    from yolopatch.files import read_text
    from yolopatch.measure import measure
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(read_text(yaml_path), name)
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values), name)
    try:
        yolo = import_yolo(models)
    except Exception as exc:  # the checkout's own import failure: report it, whatever it is
        raise YolopatchError(
            f"{models}: importing its yolo.py failed: {type(exc).__name__}: {exc}{_offline_hint(exc)}"
        ) from None
    try:
        model = yolo.Model(str(yaml_path), ch=3)
    except Exception as exc:
        raise YolopatchError(
            f"{name}: the checkout's own Model failed to build it: {type(exc).__name__}: {exc}. "
            "If it names an operator yolopatch adds, run `yolopatch inject` on the checkout first."
        ) from None
    return dataclasses.asdict(measure(model, parsed, simulation, img, batch))


def _offline_hint(exc: Exception) -> str:
    """YOLOv5 v6.0 and v6.1 download Arial.ttf into their settings folder when they are imported."""
    if not isinstance(exc, URLError):
        return ""
    return (
        ". This YOLOv5 release downloads Arial.ttf into its settings folder when imported; put Arial.ttf "
        "into the folder YOLOV5_CONFIG_DIR names (default ~/.config/Ultralytics) or run once online"
    )


def main(argv: list[str]) -> None:
    models, yaml_path, name, img, batch, out = argv
    # v4.0 to v6.0 log their summary line at INFO level without configuring logging themselves
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result: dict[str, Any]
    try:
        result = {"report": build_and_measure(Path(models), Path(yaml_path), name, int(img), int(batch))}
    except YolopatchError as exc:
        result = {"error": str(exc)}
    Path(out).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
