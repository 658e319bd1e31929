"""Backbones (a module whose forward takes the image and returns a list of feature maps): the probe's
request, and the fit of their widths and strides from what the class did.

The child builds the class once with its defaults and `--set` values and runs it on a 3-channel image at
two sizes (256 and 320: every stride up to 32 divides both, and the two tell a stride from a fixed output
size), eval mode, then forward and backward in train mode. Every output's stride is the input size over its
map size, the same at both sizes; its width the map's channels, cross-checked with what the class states
itself (`width_list`, `channel`, timm's `feature_info.channels()`). Refused: no outputs at strides 8, 16 and
32, a class that reads files from a working-directory-relative path (the child runs in an empty folder),
one that needs a package that is not installed. Pure code, like `learn` (the child is children/probe.py).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.userop.learn import Learned
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.rule import BackboneSpec, Rule
from yolopatch.userop.source import ClassSource

IMAGE_SIZES = (256, 320)
LEVELS = (8, 16, 32)  # P3, P4, P5: what a YOLO neck reads
_MISSING = re.compile(r"No module named '([\w.]+)'")
_FILE = re.compile(r"No such file or directory: '([^']+)'")


def backbone_trials(values: Mapping[str, Any]) -> dict[str, dict]:
    """One build with the class's defaults and the --set values, run at two image sizes and trained."""
    return {
        "image": {
            "kwargs": dict(values),
            "channels": 3,
            "sizes": list(IMAGE_SIZES),
            "train": True,
            "declared": True,
        }
    }


def is_backbone_output(observed: Mapping[str, Any]) -> bool:
    """Whether any trial's output was a list (or tuple) of maps: a backbone for `ops add`."""
    for run in observed.get("trials", {}).values():
        for out in run.get("outputs") or []:
            if out.get("type") in ("list", "tuple"):
                return True
    return False


def refuse_import(where: str, error: str, python: str) -> None:
    """A class that needs a package this Python lacks, named (its import failed at load or build)."""
    missing = _MISSING.search(error)
    if missing:
        package = missing.group(1).split(".")[0]
        raise YolopatchError(
            f"{where} needs the package {package}, which is not installed for {python}; install it "
            f"(pip install {package}) or probe with the Python that has it (--installed --python PATH)."
        )


def fit_backbone(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    observed: Mapping[str, Any],
    python: str,
    declared: str | None = None,
) -> Learned | None:
    """A class that looks like a backbone, from its backbone probe: its outputs, or a refusal; None where it
    is a block after all (it builds on no image and takes channel counts without defaults, as TwoOut(c1),
    which returns a tuple, does: `fit` refuses it as a block)."""
    where = f"{source.path}:{source.line}: {source.name}"
    run = observed.get("trials", {}).get("image", {})
    channels = any(p.required and roles.roles[p.name] in ("c1", "c2") for p in source.params)
    if (
        "error" in run
        and (channels or source.inputs == "list")
        and not source.factory
        and not is_backbone_output(observed)
    ):
        return None
    if declared is not None and declared != "backbone":
        raise OptionError(
            "--rule", f"--rule {declared}: {source.name} is a backbone; its rule is `backbone`."
        )
    learned = fit_outputs(where, observed, python, "function" if source.factory else "")
    return replace(learned, roles={p.name: "-" for p in source.params}, values=dict(values))


def fit_outputs(where: str, observed: Mapping[str, Any], python: str, factory: str = "") -> Learned:
    """The widths and strides the observation proves, or a YolopatchError saying why it is no backbone."""
    if "load" in observed:
        refuse_import(where, observed["load"]["error"], python)
        raise YolopatchError(f"{where}: importing the file failed: {observed['load']['error']}")
    run = observed["trials"]["image"]
    if "error" in run:
        _refuse_failed(where, run, python)
    maps = [_maps(where, out) for out in run["outputs"]]
    widths = tuple(shape[1] for shape in maps[0])
    strides = _strides(where, maps)
    _cross_check(where, widths, run.get("declared", {}))
    spec = BackboneSpec(widths, strides, factory)
    missing = [s for s in LEVELS if s not in strides]
    if missing:
        raise YolopatchError(
            f"{where} has no output at stride {', '.join(map(str, missing))} (its outputs: {spec}); a YOLO neck "
            "reads strides 8, 16 and 32. Choose a variant (or out_indices) that returns them."
        )
    if not run.get("params"):
        raise YolopatchError(f"{where}: built with 0 parameters; a backbone has weights.")
    evidence = [
        f"backbone: {len(widths)} outputs ({spec}) at {IMAGE_SIZES[0]} and {IMAGE_SIZES[1]} px images",
        _declared_evidence(run.get("declared", {})),
        f"{run['params']} parameters; forward and backward in train mode: ok",
    ]
    return Learned(
        rule=Rule("backbone"),
        roles={},
        values={},
        divisor=1,
        min_channels=1,
        unused=tuple(run.get("no_grad", ())),
        evidence=tuple(e for e in evidence if e),
        parameters=run["params"],
        backbone=spec,
    )


def _refuse_failed(where: str, run: Mapping[str, Any], python: str) -> None:
    error = str(run["error"])
    refuse_import(where, error, python)
    found = _FILE.search(error)
    if found and not found.group(1).startswith("/"):
        raise YolopatchError(
            f"{where} reads {found.group(1)!r}, a path relative to the working folder ({run['stage']}): it "
            "would load a different file (or none) wherever training runs. Make the path absolute or an "
            "option (--set PARAM=PATH), or leave the weights out."
        )
    if re.search(r"URLError|urlopen|HTTP Error|Temporary failure in name resolution|download", error):
        raise YolopatchError(
            f"{where} downloads weights when built ({error}); the probe has no network and training should not "
            "depend on it: build it without them (--set pretrained=False, or weights='')."
        )
    raise YolopatchError(
        f"{where}: {run['stage']} failed on a 3-channel image with {run['kwargs']}: {error}. Give its options "
        "with --set PARAM=VALUE."
    )


def _maps(where: str, out: Mapping[str, Any]) -> list[list[int]]:
    items = out.get("items") if out.get("type") in ("list", "tuple") else None
    if not items or any(item.get("type") != "tensor" or len(item["shape"]) != 4 for item in items):
        raise YolopatchError(
            f"{where} does not return a list of 4-D feature maps from an image (it returns {out.get('type')}); "
            "a backbone's forward returns its maps, shallowest first."
        )
    if any(item["shape"][0] != 1 for item in items):
        raise YolopatchError(f"{where} changes the batch of the image; a backbone must keep it.")
    return [item["shape"] for item in items]


def _strides(where: str, maps: Sequence[Sequence[list[int]]]) -> tuple[int, ...]:
    strides = []
    for k, shapes in enumerate(zip(*maps, strict=True)):
        per_size = {size / shape[2] for size, shape in zip(IMAGE_SIZES, shapes, strict=True)}
        per_size |= {size / shape[3] for size, shape in zip(IMAGE_SIZES, shapes, strict=True)}
        if len(per_size) != 1 or not float(next(iter(per_size))).is_integer():
            sizes = ", ".join(f"{s}px -> {sh[2]}x{sh[3]}" for s, sh in zip(IMAGE_SIZES, shapes, strict=True))
            raise YolopatchError(
                f"{where}: output {k} has no fixed stride ({sizes}); every output must be the image size over "
                "a whole number."
            )
        strides.append(int(next(iter(per_size))))
    if any(a > b for a, b in zip(strides, strides[1:], strict=False)):
        raise YolopatchError(
            f"{where} returns strides {strides}: not shallowest first; return the maps in order of depth."
        )
    return tuple(strides)


def _cross_check(where: str, widths: tuple[int, ...], declared: Mapping[str, list[int]]) -> None:
    for name, stated in declared.items():
        if list(stated) != list(widths)[-len(stated) :]:
            raise YolopatchError(
                f"{where}: its {name} says {list(stated)}, and its outputs have {list(widths)} channels; fix "
                f"{name} (a neck built from it would get the wrong widths)."
            )


def _declared_evidence(declared: Mapping[str, list[int]]) -> str:
    if not declared:
        return ""
    return "agrees with its own " + ", ".join(f"{name} {list(v)}" for name, v in declared.items())
