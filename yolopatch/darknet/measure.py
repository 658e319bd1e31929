"""`check` of a cfg with the built-in builder: forward and backward, each layer's output against the walk's
stride, the heads' strides, and per-layer parameters and GFLOPs in the targets' convention (thop's
multiply-accumulates x 2 at 640, plus the operators' weighted sums thop cannot see). Imports torch."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from yolopatch.darknet.build import DarknetModel, Users, build_cfg
from yolopatch.darknet.cfg import Cfg, Section, parse_cfg
from yolopatch.darknet.graph import walk
from yolopatch.errors import YolopatchError
from yolopatch.operators.registry import OPERATORS
from yolopatch.report import LayerReport, ModelReport, totals

FLOPS_SIZE = 640
_BY_CLASS = {op.name: op for op in OPERATORS.values()}


def check_cfg(text: str, name: str, img: int, batch: int, users: Users | None = None) -> ModelReport:
    """`users`: the user's operators the cfg uses (built in the child that imports their files)."""
    cfg = parse_cfg(text, name)
    model = build_cfg(cfg, users)
    if img % int(model.stride.max()):
        raise YolopatchError(
            f"{name}: --img {img} is not a multiple of the largest stride {int(model.stride.max())}."
        )
    shapes = _forward_backward(cfg, model, img, batch)
    macs, uncounted = _macs(model)
    layers = model.layers()
    reports = [
        section_report(layer.i, layer.f, layer.kind, section, shapes[layer.i], layer, macs, uncounted)
        for layer, section in zip(layers, cfg.sections, strict=True)
    ]
    return ModelReport(
        name=name,
        layers=reports,
        modules=len(layers),
        **totals(model, reports),
        img=img,
        batch=batch,
        strides=[float(s) for s in model.stride.tolist()],
        builder="yolopatch's darknet cfg builder",
        layers_note="one per cfg section",
    )


def section_report(
    index: int,
    sources: Sequence[int],
    kind: str,
    section: Section,
    output: str,
    layer: nn.Module,
    macs: Sequence[float],
    uncounted: Sequence[float],
) -> LayerReport:
    """One section's row: its parameters counted on `layer` (whoever built it), its GFLOPs from `macs`."""
    return LayerReport(
        index=index,
        source=list(sources) if len(sources) > 1 else sources[0],
        number=1,
        module=kind,
        args=" ".join(f"{k.name}={k.text}" for k in section.keys if k.name in ("filters", "size", "stride")),
        output=output,
        params=sum(p.numel() for p in layer.parameters()),
        gflops=2 * (macs[index] + uncounted[index]) / 1e9,
        uncounted_gflops=2 * uncounted[index] / 1e9,
        operator=next((type(m).__name__ for m in layer.modules() if type(m).__name__ in _BY_CLASS), ""),
    )


def _forward_backward(cfg: Cfg, model: DarknetModel, img: int, batch: int) -> dict[int, str]:
    """Each layer's output shape after a train-mode forward and backward; fails naming the layer whose size
    is not the one its section promises, or whose output or gradients are not finite."""
    strides = {node.index: node.stride for node in walk(cfg)}
    shapes: dict[int, str] = {}

    def after(layer: Any, _inputs: Any, output: torch.Tensor) -> None:
        shapes[layer.i] = str(list(output.shape))
        stride = strides[layer.i]
        want = 1 if stride is None else img / stride
        if output.shape[-1] != want:
            raise YolopatchError(
                f"{cfg.place(cfg.sections[layer.i])}: output is {output.shape[-1]} wide, not {want}."
            )
        if not torch.isfinite(output).all():
            raise YolopatchError(f"{cfg.place(cfg.sections[layer.i])}: output holds NaN or inf.")

    handles = [layer.register_forward_hook(after) for layer in model.layers()]
    model.train()
    x = torch.randn(
        batch, cfg.net.number("channels", 3), img, img, generator=torch.Generator().manual_seed(0)
    )
    try:
        outputs = model(x)
    except (RuntimeError, ValueError) as exc:
        raise YolopatchError(
            f"{cfg.name}: forward pass failed at --img {img}: {str(exc).splitlines()[0]}"
        ) from None
    finally:
        for handle in handles:
            handle.remove()
    torch.stack([o.square().mean() for o in outputs]).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise YolopatchError(f"{cfg.name}: {len(missing)} parameters get no gradient, e.g. {missing[0]}.")
    model.zero_grad(set_to_none=True)
    return shapes


def _macs(model: DarknetModel) -> tuple[list[float], list[float]]:
    """thop's multiply-accumulates and the operators' uncounted ones per layer, counted at the largest
    stride and scaled to 640 (the targets' way)."""
    import thop

    size = int(model.stride.max())
    scale = (FLOPS_SIZE / size) ** 2
    inputs: dict[int, Any] = {}
    uncounted: dict[int, float] = {}
    probe = copy.deepcopy(model).eval()

    def capture(layer: Any, args: Any) -> None:
        inputs[layer.i] = args

    def counter(index: int, count: Any) -> Any:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            uncounted[index] = uncounted.get(index, 0.0) + count(module, args, output)

        return hook

    handles = [layer.register_forward_pre_hook(capture) for layer in probe.layers()]
    handles += [
        m.register_forward_hook(counter(layer.i, _BY_CLASS[type(m).__name__].uncounted_macs))
        for layer in probe.layers()
        for m in layer.modules()
        if type(m).__name__ in _BY_CLASS and _BY_CLASS[type(m).__name__].uncounted_macs is not None
    ]
    channels = next(iter(probe.parameters())).shape[1] if any(True for _ in probe.parameters()) else 3
    with torch.no_grad():
        probe(torch.zeros(1, channels, size, size))
    for handle in handles:
        handle.remove()
    macs = [
        thop.profile(copy.deepcopy(layer), inputs=inputs[layer.i], verbose=False)[0] * scale
        for layer in probe.layers()
    ]
    return macs, [uncounted.get(layer.i, 0.0) * scale for layer in probe.layers()]
