"""Run a built model forward and backward and count its parameters and FLOPs, layer by layer.

Works on any model of the shape parse_model builds (`model.model` is a Sequential of layers tagged i, f,
type): the built-in builder's, and each target's own. FLOPs follow the targets' convention (thop's multiply-accumulates x 2,
counted at the model's largest stride and scaled to 640), plus each operator's weighted sums that thop
cannot see because they are tensor arithmetic, not nn.Modules (Involution's aggregation).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, cast

import torch
from torch import nn

from yolopatch.channels import Simulation, normalize_module
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import ModelYaml
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.report import LayerReport, ModelReport, totals

_BY_CLASS = {op.name: op for op in OPERATORS.values()}

FLOPS_SIZE = 640


def measure(
    model: nn.Module,
    parsed: ModelYaml,
    simulation: Simulation,
    img: int,
    batch: int,
    count_at_full_size: bool = False,
    operators: Sequence[Operator] = (),
) -> ModelReport:
    """Measure `model`, built from `parsed`; the yaml's own strides (`simulation`) say what size each output
    must have. FLOPs are counted at the largest stride and scaled to 640 (the targets' way, most releases), or
    counted at 640 itself (`count_at_full_size`: the exact count some newer releases make). `operators`: the
    user's own in the model: their rows are marked, and the parameters `ops add` found unused are named in
    a warning instead of failing the check."""
    name = parsed.name
    rows = [(r.source, r.number, r.module, r.args_text) for r in parsed.layers]
    shapes = simulation.shapes
    # Convolution-like modules promise ceil(size / stride); padding and pooling layers may not, on purpose.
    channel_modules = simulation.geometry.rules.channel_modules
    unused = {op.name: tuple(op.user.unused) for op in operators if op.user is not None}
    strides = [
        shape.stride if normalize_module(layer.module) in channel_modules else None
        for layer, shape in zip(parsed.layers, shapes, strict=True)
    ]
    layers = _layers(model)
    warnings = _check_strides(model, img, name)
    # sizes are exact only at multiples of the largest stride
    expected: list[Fraction | None] = strides if not warnings else [None] * len(strides)
    try:
        outputs, allowed = _forward_backward(model, layers, img, batch, expected, unused)
    except YolopatchError as exc:
        raise YolopatchError(f"{name}: {exc} {' '.join(warnings)}".strip()) from None
    macs, uncounted = _layer_macs(model, count_at_full_size)
    params = [sum(p.numel() for p in layer.parameters()) for layer in layers]
    reports = [
        LayerReport(
            index=i,
            source=row[0],
            number=row[1],
            module=row[2],
            args=row[3],
            output=outputs[i],
            params=params[i],
            gflops=2 * (macs[i] + uncounted[i]) / 1e9,
            uncounted_gflops=2 * uncounted[i] / 1e9,
            operator=_operator_in(layers[i], unused),
        )
        for i, row in enumerate(rows)
    ]
    blind = [
        f"layer {r.index} ({r.module}): thop counts no FLOPs for it, though it has {r.params:,} parameters; "
        "its work is tensor arithmetic thop cannot see, so GFLOPs leave it out"
        for r in reports
        if r.module in unused and r.params and not macs[r.index]
    ]
    return ModelReport(
        name=name,
        layers=reports,
        modules=len(list(model.modules())),
        **totals(model, reports),
        img=img,
        batch=batch,
        strides=[float(s) for s in getattr(model, "stride", torch.zeros(0)).tolist()]
        if hasattr(model, "stride")
        else [],
        warnings=[*warnings, *allowed, *blind],
    )


@dataclass(frozen=True)
class Fused:
    """The figures of the model after its fuse(): what the targets' validation and docs quote."""

    modules: int
    params: int
    gflops: float  # thop's count after fusing, plus the operators' work (fusing does not change it)


def fused_figures(model: nn.Module, uncounted_gflops: float) -> Fused:
    """Fuse a copy of the built-in builder's `model` (Conv + BatchNorm folded) and count it; a target that
    builds with its own code counts its own fused figures in its child."""
    fused: Any = copy.deepcopy(model).eval()
    fused = fused.fuse()
    macs, _ = _layer_macs(fused, False)
    return Fused(
        modules=len(list(fused.modules())),
        params=sum(p.numel() for p in fused.parameters()),
        gflops=2 * sum(macs) / 1e9 + uncounted_gflops,
    )


def _layers(model: nn.Module) -> list[nn.Module]:
    """The layers of a parse_model-built model (`model.model`, a Sequential)."""
    return list(cast(nn.Sequential, model.model))


def _index(layer: nn.Module) -> int:
    """The layer's position, which parse_model stores as `layer.i`."""
    return cast(int, layer.i)


def _operator_in(layer: nn.Module, users: Mapping[str, Any] = {}) -> str:  # noqa: B006 (read only)
    """The yolopatch operator (or user's operator) a layer is or holds, by class name: "" for none."""
    return next((type(m).__name__ for m in layer.modules() if type(m).__name__ in {**_BY_CLASS, **users}), "")


def _check_strides(model: nn.Module, img: int, name: str) -> list[str]:
    """The targets' Model accepts any positive whole strides for Detect's inputs, in any order (its
    check_anchor_order only flips anchors); so does check."""
    strides = [float(s) for s in getattr(model, "stride", torch.zeros(0)).tolist()]
    if any(s < 1 or s != int(s) for s in strides):
        raise YolopatchError(
            f"{name}: Detect's inputs have strides {strides}; each must be a whole number of at least 1. "
            "Check the Detect row's layer indices and the upsampling layers before them."
        )
    if strides and img % int(max(strides)):
        return [
            f"--img {img} is not a multiple of the largest stride {int(max(strides))}; the target's own code would round it up."
        ]
    return []


def _forward_backward(
    model: nn.Module,
    layers: list[nn.Module],
    img: int,
    batch: int,
    strides: list[Fraction | None],
    unused: Mapping[str, tuple[str, ...]],
) -> tuple[list[str], list[str]]:
    """Each layer's output shape after a train-mode forward and backward, and warnings for the parameters
    without a gradient that `ops add` recorded as unused (any other one fails the check)."""
    shapes: dict[int, str] = {}
    current: list[int] = []

    def before(layer, _inputs):
        current.append(layer.i)

    def after(layer, _inputs, output):
        current.pop()
        shapes[layer.i] = _describe(output)
        _check_size(layer, output, img, strides[layer.i])
        for tensor in _tensors(output):
            if not torch.isfinite(tensor).all():
                raise YolopatchError(f"layer {layer.i} ({layer.type}): output holds NaN or inf.")

    handles = [
        h
        for layer in layers
        for h in (layer.register_forward_pre_hook(before), layer.register_forward_hook(after))
    ]
    model.train()
    x = torch.randn(batch, 3, img, img, generator=torch.Generator().manual_seed(0))
    try:
        output = model(x)
    except (RuntimeError, ValueError) as exc:
        where = f"layer {current[-1]} ({layers[current[-1]].type})" if current else "the model"
        raise YolopatchError(f"{where}: forward pass failed at --img {img}: {_first_line(exc)}") from None
    finally:
        for handle in handles:
            handle.remove()
    loss = torch.stack([t.float().square().mean() for t in _tensors(output)]).sum()
    model.zero_grad(set_to_none=True)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    allowed = _recorded_unused(layers, unused)
    failing = [n for n in missing if n not in allowed]
    if failing:
        raise YolopatchError(
            f"{len(failing)} parameters get no gradient, e.g. {failing[0]}; part of the model is unused."
        )
    notes = [
        f"{allowed[n]}: {n} gets no gradient (`ops add` recorded it); multi-GPU training (DDP) needs "
        "unused parameters allowed for it"
        for n in missing
    ]
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if bad:
        raise YolopatchError(f"gradients of {bad[0]} hold NaN or inf.")
    model.zero_grad(set_to_none=True)
    return [shapes.get(_index(layer), "-") for layer in layers], notes


def _recorded_unused(layers: list[nn.Module], unused: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Full parameter names that a user's operator has without a gradient, as its record lists them."""
    allowed = {}
    for layer in layers:
        for name, module in layer.named_modules():
            for relative in unused.get(type(module).__name__, ()):
                prefix = f"{name}." if name else ""
                allowed[f"model.{_index(layer)}.{prefix}{relative}"] = (
                    f"layer {_index(layer)} ({type(module).__name__})"
                )
    return allowed


def _check_size(layer: nn.Module, output: Any, img: int, stride: Fraction | None) -> None:
    if stride is None or not isinstance(output, torch.Tensor) or output.dim() != 4:
        return
    size = img / stride
    if tuple(output.shape[-2:]) != (size, size):
        raise YolopatchError(
            f"layer {layer.i} ({layer.type}): output is {output.shape[-2]}x{output.shape[-1]} at --img {img}, "
            f"but its arguments give stride {stride}, i.e. {size}x{size}. Its module changes the resolution "
            "differently from what parse_model assumes."
        )


def _layer_macs(model: nn.Module, count_at_full_size: bool) -> tuple[list[float], list[float]]:
    """thop's MACs and the operators' uncounted MACs per layer at 640: counted at the largest stride and
    scaled, or counted at 640."""
    import thop

    stride = max(int(max(getattr(model, "stride", torch.tensor([32.0])).tolist() or [32])), 32)
    if count_at_full_size:
        stride = FLOPS_SIZE
    scale = (FLOPS_SIZE / stride) ** 2
    inputs: dict[int, Any] = {}
    uncounted: dict[int, float] = {}

    def capture(layer, args):
        # a Detect head may replace the items of its input list in place: keep a copy of the list
        inputs[layer.i] = tuple(list(a) if isinstance(a, list) else a for a in args)

    def count_uncounted(index: int, counter):
        def hook(module, args, output):
            uncounted[index] = uncounted.get(index, 0.0) + counter(module, args, output)

        return hook

    probe = copy.deepcopy(model).eval()
    probe_layers = _layers(probe)
    handles = [layer.register_forward_pre_hook(capture) for layer in probe_layers]
    handles += [
        m.register_forward_hook(count_uncounted(_index(layer), _BY_CLASS[type(m).__name__].uncounted_macs))
        for layer in probe_layers
        for m in layer.modules()
        if type(m).__name__ in _BY_CLASS and _BY_CLASS[type(m).__name__].uncounted_macs is not None
    ]
    with torch.no_grad():
        probe(torch.zeros(1, 3, stride, stride))
    for handle in handles:
        handle.remove()
    macs = []
    for layer in probe_layers:
        counted, _ = thop.profile(copy.deepcopy(layer), inputs=inputs[_index(layer)], verbose=False)
        macs.append(counted * scale)
    return macs, [uncounted.get(_index(layer), 0.0) * scale for layer in probe_layers]


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    if isinstance(output, dict):  # end-to-end heads: {"one2many": ..., "one2one": ...}
        return [t for item in output.values() for t in _tensors(item)]
    return []


def _describe(output: Any) -> str:
    tensors = _tensors(output)
    if len(tensors) == 1 and isinstance(output, torch.Tensor):
        return str(list(output.shape))
    return ", ".join(str(list(t.shape)) for t in tensors)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
