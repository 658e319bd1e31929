"""Measuring a model a darknet-cfg codebase's own Darknet class built (the child of `check MODEL.cfg --repo
PATH`): forward and backward in training mode, parameters per layer on its module_list (one entry per
section), GFLOPs the targets' way (thop's multiply-accumulates x 2, scaled to 640, plus the operators' weighted
sums thop does not see) on the layers its forward calls with their input."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.errors import YolopatchError

FLOPS_SIZE = 640


def measure(
    model: Any, cfg: Any, nodes: Sequence[Any], name: str, img: int, batch: int, who: str, root: Path
) -> dict[str, Any]:
    """The report of `model` (built by `who` from `cfg`, whose sections are `nodes`) at --img and --batch."""
    import dataclasses

    import torch

    from yolopatch.darknet.measure import section_report
    from yolopatch.operators.registry import OPERATORS
    from yolopatch.report import ModelReport, totals

    layers = list(model.module_list)
    if len(layers) != len(nodes):
        raise YolopatchError(f"{name}: {who} built {len(layers)} layers for {len(nodes)} sections.")
    by_class = {op.name: op for op in OPERATORS.values()}
    shapes: dict[int, str] = {}
    handles = []
    for i, layer in enumerate(layers):

        def hook(module: Any, args: Any, output: Any, i: int = i) -> None:
            shapes[i] = str(list(output.shape))

        handles.append(layer.register_forward_hook(hook))
    model.train()
    x = torch.randn(
        batch, cfg.net.number("channels", 3), img, img, generator=torch.Generator().manual_seed(0)
    )
    try:
        outputs = model(x)
    except Exception as exc:
        raise YolopatchError(
            f"{name}: {who}'s forward failed at --img {img}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    for handle in handles:
        handle.remove()
    torch.stack([o.float().square().mean() for o in outputs]).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise YolopatchError(
            f"{name}: {len(missing)} parameters get no gradient in {who}, e.g. {missing[0]}."
        )
    strides = [img / o.shape[2] for o in outputs]
    macs, uncounted = _macs(model, layers, int(max(strides)), cfg.net.number("channels", 3), by_class)
    reports = [
        section_report(n.index, n.sources, n.kind, section, shapes.get(n.index, ""), layer, macs, uncounted)
        for layer, n, section in zip(layers, nodes, cfg.sections, strict=True)
    ]
    report = ModelReport(
        name=name,
        layers=reports,
        modules=len(layers),
        **totals(model, reports),
        img=img,
        batch=batch,
        strides=strides,
        builder=f"{who}'s own Darknet ({root})",
        layers_note="one per cfg section",
    )
    return dataclasses.asdict(report)


def _macs(
    model: Any, layers: list[Any], size: int, channels: int, by_class: dict[str, Any]
) -> tuple[list[float], list[float]]:
    """Counted at the largest stride and scaled to 640, as the built-in builder and the targets count."""
    import thop
    import torch

    inputs: dict[int, Any] = {}
    handles = []
    for i, layer in enumerate(layers):

        def capture(module: Any, args: Any, i: int = i) -> None:
            inputs[i] = tuple(list(a) if isinstance(a, list) else a for a in args)  # outputs so far

        handles.append(layer.register_forward_pre_hook(capture))
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    for handle in handles:
        handle.remove()
    scale = (FLOPS_SIZE / size) ** 2
    macs, uncounted = [], []
    for i, layer in enumerate(layers):
        if i not in inputs:  # a layer the codebase's forward computes outside it (routes, heads)
            macs.append(0.0)
            uncounted.append(0.0)
            continue
        probe = copy.deepcopy(layer).eval()
        extra = [0.0]

        def count(module: Any, args: Any, output: Any, extra: list[float] = extra) -> None:
            rule = by_class[type(module).__name__].uncounted_macs
            extra[0] += rule(module, args, output)

        for m in probe.modules():
            if type(m).__name__ in by_class and by_class[type(m).__name__].uncounted_macs is not None:
                m.register_forward_hook(count)
        macs.append(thop.profile(probe, inputs=inputs[i], verbose=False)[0] * scale)
        uncounted.append(extra[0] * scale)
    return macs, uncounted


def unregistered_ops(kinds: list[str]) -> str:
    """The operators (comma-separated, for `inject --op`) whose cfg forms use the section types `kinds`."""
    from yolopatch.darknet.forms import NATIVE

    owners = {kind: op for op, form in NATIVE.items() for kind in form.types}
    return ",".join(dict.fromkeys(owners.get(kind, kind) for kind in kinds))


def run(argv: list[str], build: Callable[[Path, Path, str, int, int], dict[str, Any]]) -> None:
    """The child's main: ROOT IMG BATCH MODEL.cfg NAME OUT.json, `build` building and measuring."""
    root, img, batch, cfg_path, name, out = argv
    try:
        result: dict[str, Any] = {"report": build(Path(root), Path(cfg_path), name, int(img), int(batch))}
    except YolopatchError as exc:
        result = {"error": str(exc)}
    child.write(Path(out), [result])
