"""`check`: build a model yaml, run it forward and backward, and measure it.

Built-in builder by default; with a checkout, that checkout's own Model class in a child process.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.report import LayerReport, ModelReport

# YOLOv5's model_info line, e.g. "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs"
_SUMMARY = re.compile(r"\S+ summary: \d+ layers, \d+ parameters, \d+ gradients(, [\d.]+ GFLOPs)?")


def check_builtin(text: str, name: str, img: int, batch: int) -> ModelReport:
    from yolopatch.builder import build_model
    from yolopatch.measure import measure
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(text, name)
    return measure(build_model(parsed), parsed, img, batch)


def check_with_repo(repo: Path, yaml_path: Path, img: int, batch: int) -> ModelReport:
    from yolopatch.inject import find_checkout

    models = find_checkout(repo).models
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "report.json"
        env = {
            **os.environ,
            # keep YOLOv5's settings and font downloads out of the user's home, and never let it pip-install
            "YOLOV5_CONFIG_DIR": scratch,
            "YOLO_CONFIG_DIR": scratch,
            "MPLCONFIGDIR": scratch,
            "PIP_NO_INDEX": "1",
            "YOLO_OFFLINE": "1",
        }
        command = [
            sys.executable,
            "-m",
            "yolopatch.repo_build",
            str(models),
            str(yaml_path.resolve()),
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
    lines = [line for line in (process.stdout + process.stderr).splitlines() if _SUMMARY.search(line)]
    return ModelReport(
        **{
            **report,
            "layers": [LayerReport(**layer) for layer in report["layers"]],
            "reference": _SUMMARY.search(lines[0]).group(0) if lines else "",
        }
    )
