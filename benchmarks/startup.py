"""Whole-process time of `yolopatch apply`, `yolopatch --help` and `yolopatch inject --check`, beside
`python -c pass`, interleaved, medians of several runs, and each as a ratio to `python -c pass`. Also says
whether torch was imported.

    python benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "yolov5s.yaml"
CHECKOUT = ROOT / "tests" / "fixtures" / "checkouts" / "v3"


def commands(scratch: Path) -> dict[str, list[str]]:
    shutil.copytree(CHECKOUT, scratch / "v3")
    py = sys.executable
    return {
        "python -c pass": [py, "-c", "pass"],
        "yolopatch --help": [py, "-m", "yolopatch", "--help"],
        "yolopatch apply --diff": [
            py,
            "-m",
            "yolopatch",
            "apply",
            str(EXAMPLE),
            "-l",
            "8",
            "--insert",
            "--diff",
        ],
        "yolopatch inject --check": [py, "-m", "yolopatch", "inject", str(scratch / "v3"), "--check"],
    }


def torch_imported(command: list[str]) -> bool:
    probe = (
        "import runpy, sys; sys.argv = ['yolopatch', *sys.argv[1:]]\n"
        "try:\n    runpy.run_module('yolopatch', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", probe, *command[3:]], capture_output=True, text=True)
    return result.stderr.strip().splitlines()[-1] == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        cmds = commands(Path(scratch))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(args.runs):
            for name, command in cmds.items():
                start = time.perf_counter()
                subprocess.run(command, capture_output=True)
                times[name].append(time.perf_counter() - start)
        base = statistics.median(times["python -c pass"])
        # the ratio to `python -c pass` measured beside it: comparable across machines and loads
        print(f"{'command':28} {'median s':>9} {'minus python':>13} {'x python':>9}  torch imported")
        for name, command in cmds.items():
            median = statistics.median(times[name])
            imported = "-" if name.startswith("python") else str(torch_imported(command))
            print(f"{name:28} {median:9.3f} {median - base:13.3f} {median / base:9.1f}  {imported}")


if __name__ == "__main__":
    main()
