"""The probe's child process: import the user's file, build the class as asked, record what it does.

Run as `python PATH/TO/probe.py REQUEST.json RESULT.json` (yolopatch.child), never inside the CLI process: the user's
code runs only here, on the CPU, with one thread, a fixed seed and (where the platform has `resource`) a
memory limit, while the parent holds a time limit. This module only observes; `learn` fits the rule from
the observations, as pure code.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

MEMORY_LIMIT_GIB = 4


def _limit_memory(gib: float) -> None:
    try:
        import resource
    except ImportError:  # Windows: only the parent's time limit applies
        return
    limit = int(gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _error(exc: BaseException) -> dict[str, str]:
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:300]
    memory = isinstance(exc, MemoryError) or "can't allocate memory" in str(exc)
    return {"error": text, "kind": "memory" if memory else "error"}


def _load(request: dict[str, Any]) -> Any:
    for folder in reversed(request.get("sys_path", [])):
        sys.path.insert(0, folder)
    path = Path(request["file"])
    if "factory" in request:  # timm:NAME, or a module path the request names
        return _factory(request["factory"])
    spec = importlib.util.spec_from_file_location(f"yolopatch_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return getattr(module, request["class"])


def _factory(factory: dict[str, Any]) -> Any:
    """`timm:NAME`: a features_only model of NAME, pretrained off (nothing is downloaded)."""
    import timm

    def build(**kwargs: Any) -> Any:
        return timm.create_model(factory["name"], features_only=True, pretrained=False, **kwargs)

    return build


def _inputs(trial: dict[str, Any], size: Any = None, batch: int = 1, grad: bool = False) -> Any:
    """One map of `channels` at `size`, or (a fusion trial's `inputs`: [[channels, size], ...]) a list."""
    import torch

    if "inputs" in trial:
        return [torch.randn(batch, c, s, s, requires_grad=grad) for c, s in trial["inputs"]]
    return torch.randn(batch, trial["channels"], size, size, requires_grad=grad)


def _trial(cls: Any, trial: dict[str, Any]) -> dict[str, Any]:
    """Build with `kwargs`, run eval forwards at each size (once, for a fusion trial's list of inputs),
    then one train forward and backward."""
    import torch

    torch.manual_seed(0)
    observed: dict[str, Any] = {"kwargs": trial["kwargs"]}
    try:
        module = cls(**trial["kwargs"])
    except BaseException as exc:  # the user's code may raise anything
        return {**observed, "stage": "build", **_error(exc)}
    if not isinstance(module, torch.nn.Module):
        return {
            **observed,
            "stage": "build",
            "error": f"{type(module).__name__} is not an nn.Module",
            "kind": "type",
        }
    observed["params"] = sum(p.numel() for p in module.parameters())
    observed["blocks"] = _repeated_blocks(module)
    if trial.get("declared"):
        observed["declared"] = _declared_widths(module)
        indices = getattr(getattr(module, "feature_info", None), "out_indices", None)
        if isinstance(indices, (list, tuple)) and all(isinstance(i, int) for i in indices):
            observed["out_indices"] = list(indices)  # timm: which of its feature maps the outputs are
    outputs = []
    module.eval()
    for size in trial.get("sizes", [None]):
        try:
            with torch.no_grad():
                out = module(_inputs(trial, size))
        except BaseException as exc:
            at = (
                f"at {size}x{size}"
                if size
                else "of " + " + ".join(f"{c}x{s}x{s}" for c, s in trial["inputs"])
            )
            return {**observed, "stage": f"forward {at}", **_error(exc)}
        outputs.append(_describe(out))
    observed["outputs"] = outputs
    if not trial.get("train"):
        return observed
    return _train(module, trial, observed)


def _train(module: Any, trial: dict[str, Any], observed: dict[str, Any]) -> dict[str, Any]:
    """One train forward and backward at batch 2, from an input that requires a gradient (a block without
    weights is judged by it): which parameters got none, and whether the input's is there and finite."""
    import torch

    module.train()
    x = _inputs(trial, trial.get("sizes", [None])[0], batch=2, grad=True)
    leaves = x if isinstance(x, list) else [x]
    try:
        # not leaves, as inside a model: in-place operations on them are allowed
        out = module([t.clone() for t in x] if isinstance(x, list) else x.clone())
        maps = [out] if isinstance(out, torch.Tensor) else list(out) if isinstance(out, (list, tuple)) else []
        if not maps or not all(isinstance(m, torch.Tensor) for m in maps):
            return observed
        torch.stack([(m.float() ** 2).mean() for m in maps]).sum().backward()
    except BaseException as exc:
        return {**observed, "stage": "train forward and backward", **_error(exc)}
    observed["no_grad"] = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    grads = [_gradient(t) for t in leaves]
    observed["input_grad"] = (
        "none" if "none" in grads else "not finite" if "not finite" in grads else "finite"
    )
    observed["input_grads"] = grads
    return observed


def _declared_widths(module: Any) -> dict[str, Any]:
    """The widths a backbone states itself: `width_list`, `channel` (or `channels`), `feature_info.channels()`."""
    found: dict[str, Any] = {}
    for name in ("width_list", "channel", "channels"):
        value = getattr(module, name, None)
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            found[name] = list(value)
    info = getattr(module, "feature_info", None)
    try:
        if info is not None and callable(getattr(info, "channels", None)):
            found["feature_info.channels()"] = [int(c) for c in info.channels()]
    except BaseException:  # a stand-in's feature_info may be anything
        pass
    return found


def _gradient(x: Any) -> str:
    import torch

    if x.grad is None:
        return "none"
    return "finite" if bool(torch.isfinite(x.grad).all()) else "not finite"


def _describe(out: Any) -> dict[str, Any]:
    import torch

    if isinstance(out, torch.Tensor):
        return {"type": "tensor", "shape": list(out.shape), "finite": bool(torch.isfinite(out).all())}
    if isinstance(out, (list, tuple)):
        return {"type": type(out).__name__, "items": [_describe(o) for o in out]}
    return {"type": type(out).__name__}


def _repeated_blocks(module: Any) -> list[int]:
    """The lengths of the module's Sequential/ModuleList children: where a repeat count shows."""
    import torch

    return [
        len(child)
        for child in module.modules()
        if isinstance(child, (torch.nn.Sequential, torch.nn.ModuleList)) and child is not module
    ]


def _line_in(exc: BaseException, file: str) -> int | None:
    """The line of the user's file where importing it failed (a failing import, say), not the class's."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == Path(file)]
    if frames:
        return frames[-1].lineno
    return exc.lineno if isinstance(exc, SyntaxError) and exc.filename == file else None


def run(request: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    try:
        cls = _load(request)
    except BaseException as exc:
        lines = traceback.format_exception(exc)
        return {
            "load": {**_error(exc), "line": _line_in(exc, request["file"])},
            "traceback": "".join(lines[-3:]),
        }
    return {"trials": {name: _trial(cls, trial) for name, trial in request["trials"].items()}}


def main(argv: list[str]) -> None:
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).parent.resolve():
        del sys.path[0]  # run as a script: yolopatch's own modules must not shadow the user's imports
    request = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    _limit_memory(request.get("memory_gib", MEMORY_LIMIT_GIB))
    result = run(request)
    Path(argv[1]).write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
