"""How much `check --bench` moves on this machine: the same two models timed five times over, each time as
`check --bench` does (warm-up, models in turns, median of 30), with the ratio between them.

    .venv/bin/python benchmarks/bench_spread.py
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from yolopatch.build.check import bench_builtin  # noqa: E402
from yolopatch.commands.apply import ApplyOptions, apply_operator  # noqa: E402
from yolopatch.operators.registry import get_operator  # noqa: E402

EXAMPLE = (Path(__file__).resolve().parent.parent / "examples" / "yolov5s.yaml").read_text(encoding="utf-8")


def main() -> None:
    cbam = apply_operator(EXAMPLE, "8", ApplyOptions(get_operator("cbam"), insert=True)).text
    models = [(EXAMPLE, "yolov5s"), (cbam, "yolov5s-cbam-L8")]
    medians: dict[str, list[float]] = {name: [] for _, name in models}
    ratios = []
    for repetition in range(5):
        conditions, latencies = bench_builtin(models, 320, 1, "cpu", False, True, 30)
        for name, latency in latencies.items():
            medians[name].append(latency.median_ms)
        ratio = latencies["yolov5s-cbam-L8"].median_ms / latencies["yolov5s"].median_ms
        ratios.append(ratio)
        row = ", ".join(
            f"{n} {lat.median_ms:.1f} ms ({lat.q1_ms:.1f}-{lat.q3_ms:.1f})" for n, lat in latencies.items()
        )
        print(f"run {repetition + 1}: {row}; ratio {ratio:.3f}")
    print(conditions.label())
    for name, values in medians.items():
        spread = (max(values) - min(values)) / statistics.median(values)
        print(
            f"{name}: medians {min(values):.1f} to {max(values):.1f} ms (spread {spread:.1%} of their median)"
        )
    print(f"ratio: {min(ratios):.3f} to {max(ratios):.3f}")


if __name__ == "__main__":
    main()
