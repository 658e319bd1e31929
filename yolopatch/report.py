"""What `check` measured, as plain data (no torch): the CLI renders it, --json prints it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# fp32 graphs against eager, relative to the output's scale: different fusions and summation orders
TOLERANCE = 1e-4


@dataclass(frozen=True)
class LayerReport:
    index: int
    source: Any
    number: int
    module: str
    args: str
    output: str
    params: int
    gflops: float
    uncounted_gflops: float  # the operator's weighted sums that thop does not see (included in gflops)
    operator: str  # the yolopatch operator in this layer ("" for none)


@dataclass(frozen=True)
class ModelReport:
    name: str
    layers: list[LayerReport]
    modules: int
    params: int
    gradients: int
    gflops: float
    uncounted_gflops: float
    img: int
    batch: int
    strides: list[float]
    warnings: list[str] = field(default_factory=list)
    reference: str = ""  # the summary line the code that built it printed (a target's own code: --repo, or an installed package)
    builder: str = ""  # what built it, when not yolopatch's own builder: "<package> 8.3.0 at PATH"
    reference_by: str = ""  # whose summary `reference` is: "<package> 8.3.0" ("": the checkout's)
    # how `modules` counts when the target's own convention is not the built-in builder's (every module)
    layers_note: str = ""
    export: ExportReport | None = None  # check --export: what the exported file gave
    # check --fused: after the target's fuse() (None when not asked for)
    fused_modules: int | None = None
    fused_params: int | None = None
    fused_gflops: float | None = None


@dataclass(frozen=True)
class Parity:
    """The largest difference between the exported model's outputs and eager's at one input shape."""

    shape: tuple[int, ...]
    max_abs: float
    max_rel: float  # max_abs over the largest eager output value

    @property
    def ok(self) -> bool:
        return self.max_rel <= TOLERANCE


@dataclass(frozen=True)
class ExportReport:
    format: str
    exporter: str  # what wrote it and what ran it
    opset: int | None
    nodes: int
    size_bytes: int
    parity: tuple[Parity, ...]

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.parity)


def report_from_dict(data: dict[str, Any]) -> ExportReport:
    """An ExportReport back from its JSON form (a build child's)."""
    parity = tuple(Parity(tuple(p["shape"]), p["max_abs"], p["max_rel"]) for p in data["parity"])
    return ExportReport(**{**data, "parity": parity})


@dataclass(frozen=True)
class Conditions:
    device: str  # "cpu" or "cuda:0 (NVIDIA ...)"
    dtype: str  # "float32" or "float16"
    threads: int  # torch's intra-op threads (CPU)
    batch: int
    img: int
    fused: bool
    warmup: int
    runs: int

    def label(self) -> str:
        where = f"{self.device}, {self.threads} thread(s)" if self.device == "cpu" else self.device
        fused = "fused" if self.fused else "unfused"
        return (
            f"model forward only (no pre-processing, no NMS), {where}, {self.dtype}, batch {self.batch}, "
            f"{self.img}x{self.img}, {fused}; median of {self.runs} runs after {self.warmup} warm-up, "
            "models timed in turns"
        )


@dataclass(frozen=True)
class Latency:
    median_ms: float
    q1_ms: float
    q3_ms: float

    @property
    def fps(self) -> float:
        """Forward passes per second, 1000 / median ms (at batch N, N times as many images)."""
        return 1000.0 / self.median_ms if self.median_ms else float("inf")


def totals(model: Any, reports: Sequence[Any]) -> dict[str, Any]:
    """A built model's parameter and gradient counts and its layers' GFLOPs, as ModelReport holds them."""
    parameters = list(model.parameters())
    return {
        "params": sum(p.numel() for p in parameters),
        "gradients": sum(p.numel() for p in parameters if p.requires_grad),
        "gflops": sum(r.gflops for r in reports),
        "uncounted_gflops": sum(r.uncounted_gflops for r in reports),
    }
