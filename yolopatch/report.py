"""What `check` measured, as plain data (no torch): the CLI renders it, --json prints it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from yolopatch.export import ExportReport


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
    reference: str = ""  # the summary line the code that built it printed (YOLOv5 with --repo, ultralytics)
    builder: str = ""  # what built it, when not yolopatch's own builder: "ultralytics 8.3.0 at PATH"
    # how `modules` counts when the target's own convention is not YOLOv5's (every module)
    layers_note: str = ""
    export: ExportReport | None = None  # check --export: what the exported file gave
    # check --fused: after the target's fuse() (None when not asked for)
    fused_modules: int | None = None
    fused_params: int | None = None
    fused_gflops: float | None = None
