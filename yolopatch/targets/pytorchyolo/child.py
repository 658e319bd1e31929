"""Child process for `check MODEL.cfg --repo PATH`: build a cfg with pytorchyolo's own Darknet class, run it
forward and backward in training mode, and measure it per layer.

    python -m yolopatch.targets.pytorchyolo.child ROOT IMG BATCH MODEL.cfg NAME OUT.json

ROOT is the folder that holds the `pytorchyolo` package (put first on sys.path: this copy, injected or not,
is the one imported). Parameters are counted on its own module_list, one entry per section; GFLOPs the
targets' way (thop's multiply-accumulates x 2, scaled to 640, plus the operators' weighted sums thop does
not see) on the layers its forward calls with their input.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.errors import YolopatchError

FLOPS_SIZE = 640


def build_and_measure(root: Path, cfg_path: Path, name: str, img: int, batch: int) -> dict[str, Any]:
    import dataclasses

    import torch

    from yolopatch.darknet.cfg import parse_cfg
    from yolopatch.darknet.graph import walk
    from yolopatch.darknet.measure import section_report
    from yolopatch.files import read_text
    from yolopatch.operators.registry import OPERATORS
    from yolopatch.report import ModelReport, totals

    sys.path.insert(0, str(root))
    try:
        from pytorchyolo.models import Darknet
    except Exception as exc:
        raise YolopatchError(
            f"{root}: importing pytorchyolo.models failed: {type(exc).__name__}: {exc}"
        ) from None
    cfg = parse_cfg(read_text(cfg_path), name)
    nodes = walk(cfg)
    _refuse_unregistered(
        Path(sys.modules["pytorchyolo.models"].__file__ or ""), [n.kind for n in nodes], name
    )
    try:
        model = Darknet(str(cfg_path))
    except Exception as exc:
        raise YolopatchError(
            f"{name}: pytorchyolo's own Darknet failed to build it: {type(exc).__name__}: {exc}."
        ) from None
    layers = list(model.module_list)
    if len(layers) != len(nodes):
        raise YolopatchError(f"{name}: pytorchyolo built {len(layers)} layers for {len(nodes)} sections.")
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
            f"{name}: pytorchyolo's forward failed at --img {img}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
        ) from None
    for handle in handles:
        handle.remove()
    torch.stack([o.float().square().mean() for o in outputs]).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    if missing:
        raise YolopatchError(
            f"{name}: {len(missing)} parameters get no gradient in pytorchyolo, e.g. {missing[0]}."
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
        builder=f"pytorchyolo's own Darknet ({root})",
        layers_note="one per cfg section",
    )
    return dataclasses.asdict(report)


def _refuse_unregistered(models: Path, kinds: list[str], name: str) -> None:
    """pytorchyolo builds a section type its dispatches lack as an empty layer that forward skips: a silent
    identity with the previous section's filters. Refuse the cfg, naming the types and the inject step."""
    from yolopatch.files import read_text
    from yolopatch.targets.pytorchyolo.edits import find_sites
    from yolopatch.targets.pytorchyolo.package import Package

    package = Package(models.parent)
    sites = find_sites(package, {models: read_text(models)})
    registered = sites.create.types & sites.forward.types
    missing = sorted({kind for kind in kinds if kind not in registered and kind != "net"})
    if missing:
        from yolopatch.darknet.forms import NATIVE

        owners = {kind: op for op, form in NATIVE.items() for kind in form.types}
        ops = ",".join(dict.fromkeys(owners.get(kind, kind) for kind in missing))
        raise YolopatchError(
            f"{name}: {models} does not register [{'], ['.join(missing)}] in both create_modules and "
            "Darknet.forward, so pytorchyolo would build each as a silent identity; register them with "
            f"`yolopatch inject {models.parent} --op {ops}`."
        )


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
            inputs[i] = args

        handles.append(layer.register_forward_pre_hook(capture))
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    for handle in handles:
        handle.remove()
    scale = (FLOPS_SIZE / size) ** 2
    macs, uncounted = [], []
    for i, layer in enumerate(layers):
        if i not in inputs:  # route, shortcut and yolo: pytorchyolo's forward computes them outside the layer
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


def main(argv: list[str]) -> None:
    root, img, batch, cfg_path, name, out = argv
    try:
        result: dict[str, Any] = {
            "report": build_and_measure(Path(root), Path(cfg_path), name, int(img), int(batch))
        }
    except YolopatchError as exc:
        result = {"error": str(exc)}
    child.write(Path(out), [result])


if __name__ == "__main__":
    main(sys.argv[1:])
