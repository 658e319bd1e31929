"""Involution aggregation and module: yolopatch's shift-and-accumulate against the unfold formulation.

    python benchmarks/involution.py [--repeats 5] [--quick]

Times are medians of interleaved runs (ours, unfold, ours, unfold, ...) in one process per thread count,
fp32 on the CPU. Peak extra memory is the growth of the process's peak RSS over one call, measured in a
fresh subprocess per case (CPU torch has no allocator statistics; Linux /proc), 1 thread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
from torch import nn

from yolopatch.operators.involution import output_size
from yolopatch.templates.involution import Involution, InvolutionAggregate

SHAPES = [(128, 80), (256, 40), (512, 20)]
BATCHES = [1, 4]
K = 7


def unfold_aggregate(x: torch.Tensor, w: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """The reference (d-li14/involution) aggregation: build the K*K*C*H*W unfolded tensor, weight, sum."""
    b, c, _, _ = x.shape
    g, ho, wo = w.shape[1], w.shape[-2], w.shape[-1]
    cols = nn.functional.unfold(x, k, padding=(k - 1) // 2, stride=s).view(b, g, c // g, k * k, ho, wo)
    return (w.view(b, g, 1, k * k, ho, wo) * cols).sum(3).view(b, c, ho, wo)


class UnfoldInvolution(Involution):
    """The same module with the unfold aggregation: the blog recipe's speed and memory."""

    def forward(self, x):
        w = self.conv2(self.conv1(self.pool(x)))
        b, _, ho, wo = w.shape
        return self.proj(unfold_aggregate(x, w.view(b, -1, self.k * self.k, ho, wo), self.k, self.s))


def make_case(variant: str, part: str, c: int, size: int, batch: int):
    """A zero-argument callable for one measurement, plus whether it runs backward."""
    torch.manual_seed(0)
    x = torch.randn(batch, c, size, size, requires_grad=True)
    if part == "aggregation":
        g = c // 16
        w = torch.randn(batch, g, K * K, output_size(size, K, 1), output_size(size, K, 1), requires_grad=True)
        op = InvolutionAggregate.apply if variant == "ours" else unfold_aggregate
        return lambda: op(x, w, K, 1)
    module = (Involution if variant == "ours" else UnfoldInvolution)(c, c, K, 1)
    return lambda: module(x)


def cases(shapes, batches):
    """Every (part, channels, size, batch, backward) combination, in a fixed order."""
    for part in ("aggregation", "module"):
        for c, size in shapes:
            for batch in batches:
                for backward in (False, True):
                    yield part, c, size, batch, backward


def run(fn, backward: bool) -> None:
    y = fn()
    if backward:
        y.sum().backward()


def time_cases(repeats: int, threads: int, shapes, batches) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    for part, c, size, batch, backward in cases(shapes, batches):
        fns = {v: make_case(v, part, c, size, batch) for v in ("ours", "unfold")}
        times: dict[str, list[float]] = {v: [] for v in fns}
        for fn in fns.values():
            run(fn, backward)  # warm-up
        for _ in range(repeats):
            for v, fn in fns.items():
                start = time.perf_counter()
                run(fn, backward)
                times[v].append(time.perf_counter() - start)
        ours, unfold = statistics.median(times["ours"]), statistics.median(times["unfold"])
        mode = "fwd+bwd" if backward else "fwd"
        rows.append(
            dict(
                part=part,
                c=c,
                size=size,
                batch=batch,
                threads=threads,
                mode=mode,
                ours_ms=ours * 1e3,
                unfold_ms=unfold * 1e3,
                speedup=unfold / ours,
            )
        )
        print(_format_time(rows[-1]), flush=True)
    return rows


def peak_extra_mb(variant: str, part: str, c: int, size: int, batch: int, backward: bool) -> float:
    """Run one call in a fresh process: its peak RSS (VmHWM, reset first) over the RSS it started from."""
    code = (
        "import sys, torch; sys.path.insert(0, 'benchmarks'); torch.set_num_threads(1);"
        "from involution import make_case, run, rss_kb;"
        f"fn = make_case({variant!r}, {part!r}, {c}, {size}, {batch});"
        "open('/proc/self/clear_refs', 'w').write('5'); before = rss_kb('VmRSS');"
        f"run(fn, {backward}); print((rss_kb('VmHWM') - before) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return float(out.strip().splitlines()[-1])


def rss_kb(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc (Linux only)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def memory_cases(shapes, batches) -> list[dict]:
    rows = []
    for part, c, size, batch, backward in cases(shapes, batches):
        ours = peak_extra_mb("ours", part, c, size, batch, backward)
        unfold = peak_extra_mb("unfold", part, c, size, batch, backward)
        mode = "fwd+bwd" if backward else "fwd"
        ratio = ours / unfold if unfold else float("nan")
        rows.append(
            dict(
                part=part, c=c, size=size, batch=batch, mode=mode, ours_mb=ours, unfold_mb=unfold, ratio=ratio
            )
        )
        print(
            f"memory {part:11} C={c:<3} {size}x{size} b={batch} {mode:7} "
            f"ours {ours:8.1f} MB  unfold {unfold:8.1f} MB  ratio {ratio:.3f}",
            flush=True,
        )
    return rows


def _format_time(r: dict) -> str:
    return (
        f"time   {r['part']:11} C={r['c']:<3} {r['size']}x{r['size']} b={r['batch']} t={r['threads']} "
        f"{r['mode']:7} ours {r['ours_ms']:8.1f} ms  unfold {r['unfold_ms']:8.1f} ms  {r['speedup']:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="one small shape, batch 1")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    shapes, batches = (SHAPES[-1:], [1]) if args.quick else (SHAPES, BATCHES)
    print(f"torch {torch.__version__}, K={K}, fp32, CPU; medians of {args.repeats} interleaved runs")
    rows = [r for threads in (1, 2) for r in time_cases(args.repeats, threads, shapes, batches)]
    memory = memory_cases(shapes, batches)
    worst = {
        m: min(r["speedup"] for r in rows if r["mode"] == m and r["part"] == "aggregation")
        for m in ("fwd", "fwd+bwd")
    }
    print(
        f"aggregation, worst speed-up over all shapes: fwd {worst['fwd']:.1f}x, fwd+bwd {worst['fwd+bwd']:.1f}x; "
        f"worst memory ratio {max(r['ratio'] for r in memory if r['part'] == 'aggregation'):.3f}"
    )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"time": rows, "memory": memory}, handle, indent=1)


if __name__ == "__main__":
    main()
