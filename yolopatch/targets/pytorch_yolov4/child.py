"""Child process for `check MODEL.cfg --repo PATH`: build a cfg with the checkout's own Darknet class (its
models/models.py, or a root models.py), run it forward and backward in training mode, and measure it per
layer (yolopatch.targets.cfgcode.measure).

    python -m yolopatch.targets.pytorch_yolov4.child ROOT IMG BATCH MODEL.cfg NAME OUT.json
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.targets.cfgcode.measure import measure, run, unregistered_ops

FAMILY = "PyTorch_YOLOv4"


def build_and_measure(root: Path, cfg_path: Path, name: str, img: int, batch: int) -> dict[str, Any]:
    import importlib

    from yolopatch.darknet.cfg import parse_cfg
    from yolopatch.darknet.graph import walk
    from yolopatch.files import read_text
    from yolopatch.targets.pytorch_yolov4.package import find_checkout, read_checkout

    checkout = find_checkout(root)
    if checkout is None:
        raise YolopatchError(f"{root}: not a {FAMILY} checkout (nor one of its root-models.py layout).")
    who = checkout.layout
    cfg = parse_cfg(read_text(cfg_path), name)
    nodes = walk(cfg)
    _refuse_unregistered(checkout, read_checkout(checkout), cfg, name)
    sys.path.insert(0, str(root))
    try:
        Darknet = importlib.import_module(checkout.module).Darknet
    except Exception as exc:
        raise YolopatchError(
            f"{root}: importing {checkout.module} failed: {type(exc).__name__}: {exc}"
        ) from None
    try:
        model = Darknet(str(cfg_path))
    except Exception as exc:
        raise YolopatchError(
            f"{name}: {who}'s own Darknet failed to build it: {type(exc).__name__}: {exc}."
        ) from None
    return measure(model, cfg, nodes, name, img, batch, who, root)


def _refuse_unregistered(checkout: Any, texts: Any, cfg: Any, name: str) -> None:
    """create_modules builds a section type it lacks as an empty layer (a silent identity with the previous
    section's filters), and parse_model_cfg asserts on a key not in `supported`: refuse the cfg, naming the
    types or keys and the inject step (or why no inject registers them: darknet's own layers where the
    [convolutional] drops activation=logistic, keys of darknet's own sections)."""
    from yolopatch.darknet.forms import NATIVE
    from yolopatch.operators.registry import get_operator
    from yolopatch.targets.cfgcode.dispatch import TAG
    from yolopatch.targets.pytorch_yolov4.edits import find_sites, native_refusal

    sites = find_sites(checkout, texts)
    types, keys = sites.create.types, sites.supported.all_keys()
    missing = sorted({s.kind for s in cfg.sections if s.kind not in types and s.kind != "net"})
    lines = sites.text.splitlines()  # the types it builds itself (not in a branch yolopatch added):
    own = {kind for kind, node in sites.create.branches if kind and TAG not in lines[node.lineno - 1]}
    for op_name, form in NATIVE.items():
        if set(form.types) & set(missing) and "logistic" not in sites.activations:
            lacking = [kind for kind in form.types if kind in missing]
            raise YolopatchError(
                f"{name}: {native_refusal(sites, get_operator(op_name), lacking, 'the cfg was not built')}"
            )
    where = "create_modules"
    if not missing:  # a section whose keys parse_model_cfg would assert on
        unknown = {(s.kind, k.name) for s in cfg.sections for k in s.keys if k.name not in keys}
        theirs = sorted(f"{k} ([{kind}])" for kind, k in unknown if kind in own)
        if theirs:
            raise YolopatchError(
                f"{name}: {checkout.parse_config}'s parse_model_cfg does not accept {', '.join(theirs)} (not "
                f"in its `supported`), so {checkout.layout} cannot build this cfg; remove those keys, or "
                "build it with pytorchyolo."
            )
        missing, where = (
            sorted({kind for kind, _ in unknown}),
            "utils/parse_config.py's `supported` (their keys)",
        )
    if missing:
        raise YolopatchError(
            f"{name}: {checkout.models} does not register [{'], ['.join(missing)}] in {where}, so "
            f"{checkout.layout} would build each as a silent identity or refuse its keys; register them with "
            f"`yolopatch inject {checkout.root} --op {unregistered_ops(missing)}`."
        )


if __name__ == "__main__":
    run(sys.argv[1:], build_and_measure)
