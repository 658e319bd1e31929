"""`check --bench`: model-only forward latency, measured so that figures can be compared and quoted.

Every model is warmed up, then the models are timed in turns (model A, B, C, A, B, C, ...), so that a
noisy machine slows them alike and their ratios stay fair; each timing waits for the device (CUDA is
synchronised). Reported: the median, the spread (quartiles), and FPS = 1000 / median ms, each with the
conditions it was measured under. Pre-processing and NMS are not part of it, and the label says so.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from yolopatch.report import Conditions, Latency

Clock = Callable[[], float]


def time_models(
    models: Mapping[str, nn.Module],
    inputs: torch.Tensor,
    warmup: int = 10,
    runs: int = 50,
    clock: Clock = time.perf_counter,
    synchronize: Callable[[], None] = lambda: None,
) -> dict[str, Latency]:
    """Warm every model up, then time them in turns, `runs` times each; no gradients."""
    samples: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for _ in range(warmup):
            for model in models.values():
                model(inputs)
        synchronize()
        for _ in range(runs):
            for name, model in models.items():
                start = clock()
                model(inputs)
                synchronize()
                samples[name].append((clock() - start) * 1000.0)
    return {name: _summary(times) for name, times in samples.items()}


def _summary(times: list[float]) -> Latency:
    if len(times) < 2:
        return Latency(times[0], times[0], times[0])
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Latency(median, q1, q3)


def bench_on_device(
    models: Mapping[str, nn.Module], img: int, batch: int, device: str, half: bool, fused: bool, runs: int
) -> tuple[Conditions, dict[str, Latency]]:
    """Move the models to `device` (fp16 where asked, on CUDA), time them, and say under what conditions."""
    target = torch.device(device)
    if target.type == "cpu" and half:
        raise ValueError(
            "fp16 timing needs CUDA: CPU kernels for fp16 convolutions are not what deployments run"
        )
    dtype = torch.float16 if half else torch.float32
    ready = {name: m.to(target, dtype).eval() for name, m in models.items()}
    inputs = torch.randn(batch, 3, img, img, device=target, dtype=dtype)
    synchronize: Callable[[], Any] = (
        (lambda: torch.cuda.synchronize(target)) if target.type == "cuda" else (lambda: None)
    )
    name = f"{device} ({torch.cuda.get_device_name(target)})" if target.type == "cuda" else "cpu"
    warmup = 10
    latencies = time_models(ready, inputs, warmup, runs, synchronize=synchronize)
    conditions = Conditions(
        name, str(dtype).removeprefix("torch."), torch.get_num_threads(), batch, img, fused, warmup, runs
    )
    return conditions, latencies
