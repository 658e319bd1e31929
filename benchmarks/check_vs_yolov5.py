"""`yolopatch check` on the example yolov5s yaml beside YOLOv5 v7.0's own `python models/yolo.py --cfg
yolovs5.yaml` from the unpacked wheel, interleaved; whole-process wall time (median) and peak RSS.

    python benchmarks/check_vs_yolov5.py [--runs 5] [--cache .cache]

Needs the test setup (YOLOv5's runtime imports) and the wheel the tests download into .cache/. torchvision
comes from the tests' stand-in (tests/stubs), as in the tests.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS in MiB (ru_maxrss of waited-for children, by difference)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, _, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if process.stderr is not None:
        process.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache")
    args = parser.parse_args()
    package = args.cache / "yolov5-7.0.14" / "yolov5"
    if not (package / "models" / "yolo.py").exists():
        sys.exit(f"{package}: not found; run the tests once (they download the wheel) or pass --cache")
    with tempfile.TemporaryDirectory() as scratch:
        env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT / 'tests' / 'stubs'}{os.pathsep}{package.parent}",
            "YOLOV5_CONFIG_DIR": scratch,
            "YOLO_CONFIG_DIR": scratch,
            "MPLCONFIGDIR": scratch,
            "PIP_NO_INDEX": "1",
        }
        commands = {
            "yolopatch check (640)": (
                [sys.executable, "-m", "yolopatch", "check", str(ROOT / "examples" / "yolov5s.yaml")],
                ROOT,
            ),
            "YOLOv5 models/yolo.py --cfg": (
                [sys.executable, "models/yolo.py", "--cfg", "yolov5s.yaml"],
                package,
            ),
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, (command, cwd) in commands.items():
                results[name].append(timed(command, cwd, env))
    print(f"{'command':32} {'median s':>9} {'peak RSS MiB':>13}")
    medians = {}
    for name, runs in results.items():
        medians[name] = statistics.median(t for t, _ in runs)
        print(f"{name:32} {medians[name]:9.2f} {max(m for _, m in runs):13.0f}")
    ours, theirs = medians["yolopatch check (640)"], medians["YOLOv5 models/yolo.py --cfg"]
    print(f"ratio yolopatch/YOLOv5: {ours / theirs:.2f}")


if __name__ == "__main__":
    main()
