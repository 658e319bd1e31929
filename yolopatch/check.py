"""`check`: build a model yaml, run it forward and backward, and measure it.

Built-in builder by default; with a checkout, that checkout's own Model class in a child process.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.report import LayerReport, ModelReport

# YOLOv5's model_info line, e.g. "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs";
# master writes the counts with thousands separators ("6,320,733 parameters"), v4.0 to v6.0
# "Model Summary: ... 17.0 GFLOPS".
_COUNT = r"\d{1,3}(?:,\d{3})+|\d+"
_SUMMARY = re.compile(
    rf"(?:\S+ summary|Model Summary): (?:{_COUNT}) layers, (?:{_COUNT}) parameters, (?:{_COUNT}) gradients"
    r"(?:, [\d.]+ GFLOP[sS])?"
)
# The settings folder YOLOv5 (YOLOV5_CONFIG_DIR) and ultralytics (YOLO_CONFIG_DIR) use when the variable is
# unset, by platform.system(); matplotlib's is ~/.config/matplotlib.
_SETTINGS_HOME = {"Windows": "AppData/Roaming", "Linux": ".config", "Darwin": "Library/Application Support"}


def check_builtin(text: str, name: str, img: int, batch: int) -> ModelReport:
    from yolopatch.builder import build_model
    from yolopatch.measure import measure
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(text, name)
    return measure(build_model(parsed), parsed, img, batch)


def check_with_repo(repo: Path, yaml_path: Path, img: int, batch: int) -> ModelReport:
    from yolopatch.inject import find_checkout

    # the child runs in a scratch folder: every path the user typed is resolved here, where they typed it
    models = find_checkout(repo).models.resolve()
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "report.json"
        env = child_environment(os.environ, Path.home(), platform.system(), Path(scratch))
        command = [
            sys.executable,
            "-m",
            "yolopatch.repo_build",
            str(models),
            str(yaml_path.resolve()),
            str(yaml_path),
            str(img),
            str(batch),
            str(out),
        ]
        process = subprocess.run(command, capture_output=True, text=True, env=env, cwd=scratch)
        if not out.exists():
            tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
            raise YolopatchError(f"{models}: building with the checkout crashed: {' | '.join(tail)}")
        result = json.loads(out.read_text(encoding="utf-8"))
    if "error" in result:
        raise YolopatchError(result["error"])
    report = result["report"]
    return ModelReport(
        **{
            **report,
            "layers": [LayerReport(**layer) for layer in report["layers"]],
            "reference": reference_summary(process.stdout + process.stderr),
        }
    )


def reference_summary(log: str) -> str:
    """The first summary line a checkout printed while building ("" when it printed none)."""
    match = _SUMMARY.search(log)
    return match.group(0) if match else ""


def child_environment(environ: Mapping[str, str], home: Path, system: str, scratch: Path) -> dict[str, str]:
    """The environment of the child that imports the checkout.

    The user's own settings folders are kept when set or when they exist (v6.0 and v6.1 look for a cached
    Arial.ttf there at import and download it otherwise); only a folder that does not exist yet is sent to
    `scratch`, so a check creates nothing in the home folder. pip installs and hub calls are switched off.
    """
    settings = home / _SETTINGS_HOME.get(system, "")
    defaults = {
        "YOLOV5_CONFIG_DIR": settings / "Ultralytics",
        "YOLO_CONFIG_DIR": settings / "Ultralytics",
        "MPLCONFIGDIR": home / ".config" / "matplotlib",
    }
    env = {**environ, "PIP_NO_INDEX": "1", "YOLO_OFFLINE": "1"}
    for variable, default in defaults.items():
        if not environ.get(variable) and not default.is_dir():
            env[variable] = str(scratch)
    return env
