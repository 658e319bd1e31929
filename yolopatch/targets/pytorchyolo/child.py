"""Child process for `check MODEL.cfg --repo PATH`: build a cfg with pytorchyolo's own Darknet class, run it
forward and backward in training mode, and measure it per layer.

    python -m yolopatch.targets.pytorchyolo.child ROOT IMG BATCH MODEL.cfg NAME OUT.json

ROOT is the folder that holds the `pytorchyolo` package (put first on sys.path: this copy, injected or not,
is the one imported). yolopatch.targets.cfgcode.measure measures it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.targets.cfgcode.measure import measure, run, unregistered_ops


def build_and_measure(root: Path, cfg_path: Path, name: str, img: int, batch: int) -> dict[str, Any]:
    from yolopatch.darknet.cfg import parse_cfg
    from yolopatch.darknet.graph import walk
    from yolopatch.files import read_text

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
    return measure(model, cfg, nodes, name, img, batch, "pytorchyolo", root)


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
        ops = unregistered_ops(missing)
        raise YolopatchError(
            f"{name}: {models} does not register [{'], ['.join(missing)}] in both create_modules and "
            "Darknet.forward, so pytorchyolo would build each as a silent identity; register them with "
            f"`yolopatch inject {models.parent} --op {ops}`."
        )


if __name__ == "__main__":
    run(sys.argv[1:], build_and_measure)
