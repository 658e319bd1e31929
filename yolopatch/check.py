"""`check`: build a model yaml, run it forward and backward, and measure it.

Built-in builder by default; with a checkout, that checkout's own Model class in a child process.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.report import LayerReport, ModelReport
from yolopatch.targets import yolov5


def check_builtin(text: str, name: str, img: int, batch: int) -> ModelReport:
    """Build with yolopatch's own YOLOv5 v7.0 blocks (no checkout, no eval) and measure."""
    from yolopatch.builder import build_model
    from yolopatch.channels import geometry, simulate
    from yolopatch.measure import measure
    from yolopatch.modelyaml import parse_model_yaml

    parsed = parse_model_yaml(text, name)
    simulation = simulate(parsed.logical_rows(), geometry(parsed.values), name)
    return measure(build_model(parsed, simulation), parsed, simulation, img, batch)


def check_with_repo(repo: Path, yaml_path: Path, img: int, batch: int) -> ModelReport:
    """Build with the checkout's own Model class in a child process and measure."""
    # the child runs in a scratch folder: every path the user typed is resolved here, where they typed it
    models = yolov5.find_checkout(repo).models.resolve()
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "report.json"
        env = yolov5.child_environment(os.environ, Path.home(), platform.system(), Path(scratch))
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
            "reference": yolov5.reference_summary(process.stdout + process.stderr),
        }
    )
