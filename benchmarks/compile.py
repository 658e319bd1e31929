"""torch.compile of the operators next to a plain Conv of the same width: compile time and how many graphs
three input shapes cost (torch.compile's default: a static graph first, one dynamic graph after).

    .venv/bin/python benchmarks/compile.py
"""

from __future__ import annotations

import importlib
import sys
import time
import warnings
from pathlib import Path

import torch
import torch._dynamo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolopatch.operators.registry import OPERATORS  # noqa: E402
from yolopatch.templates.common import Conv  # noqa: E402

SHAPES = [(1, 64, 40, 40), (2, 64, 32, 24), (4, 64, 17, 13)]


def measure(name, module):
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    compiled = torch.compile(module.eval())
    start = time.perf_counter()
    worst = 0.0
    with torch.no_grad():
        for shape in SHAPES:
            x = torch.randn(*shape)
            worst = max(worst, float((compiled(x) - module(x)).abs().max()))
    seconds = time.perf_counter() - start
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    print(f"{name:24s} {seconds:6.1f} s for {len(SHAPES)} shapes, {graphs} graph(s), max diff {worst:.1e}")


def main():
    warnings.simplefilter("ignore")
    torch.manual_seed(0)
    measure("Conv(64, 64, 7, 1)", torch.nn.Sequential(Conv(64, 64, 7, 1)))
    for op in OPERATORS.values():
        cls = getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)
        for s in [1, 2] if op.strided else [1]:
            measure(f"{op.name} s={s}", cls(64, 64, *op.yaml_args(64, s, op.defaults)[1:]))


if __name__ == "__main__":
    main()
