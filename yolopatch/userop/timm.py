"""`ops add timm:NAME`: a timm model as a backbone, `features_only=True` with the `out_indices` of its
stride-8, -16 and -32 maps, `pretrained` off (nothing is downloaded unless `--set pretrained=True`).

Needs the optional extra `yolopatch[timm]` in the Python that probes and trains (timm imports torchvision:
a torchvision built for that torch). Learned in two probes: every feature map the model gives (their
strides from two image sizes), then the chosen `out_indices`, whose outputs must be exactly strides 8, 16
and 32. Pure code, like `learn` (the child is children/probe.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.userop.backbone import LEVELS, backbone_trials, fit_outputs
from yolopatch.userop.learn import Learned
from yolopatch.userop.params import Param
from yolopatch.userop.record import UserOp
from yolopatch.userop.source import ClassSource

PREFIX = "timm:"


def timm_name(spec: str) -> str | None:
    """NAME of `timm:NAME` (None: another spec)."""
    if not spec.startswith(PREFIX):
        return None
    name = spec[len(PREFIX) :]
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise OptionError(
            "timm:NAME", f"{spec}: write timm:NAME with a timm model name, e.g. timm:mobilenetv3_small_100."
        )
    return name


def yaml_name(name: str) -> str:
    """A yaml name for a timm model: its name, other characters than letters, digits and _ as _."""
    return re.sub(r"\W", "_", name)


def timm_source(name: str, out_indices: tuple[int, ...] = (), pretrained: bool = False) -> ClassSource:
    """What the probe and the record need of `timm:NAME`: its options are out_indices and pretrained."""
    params = (
        Param("out_indices", list(out_indices), repr(list(out_indices))),
        Param("pretrained", pretrained, repr(pretrained)),
    )
    return ClassSource(
        path=Path(f"{PREFIX}{name}"),
        name=name,
        line=0,
        params=params,
        target_imports=(),
        helpers=(),
        digest="",
        outputs="list",
        factory=True,
    )


def request(name: str) -> dict[str, Any]:
    return {"factory": {"name": name}}


def all_features(values: Mapping[str, Any]) -> dict[str, dict]:
    """The first probe: every feature map timm gives by default (`out_indices` left out)."""
    return backbone_trials({k: v for k, v in values.items() if k != "out_indices"})


def chosen_indices(where: str, observed: Mapping[str, Any], python: str) -> tuple[int, ...]:
    """The out_indices of the stride-8, -16 and -32 maps, from the first probe; refused where one lacks."""
    learned = _fit_all(where, observed, python)
    spec = learned.backbone
    assert spec is not None
    given = observed["trials"]["image"].get("out_indices") or list(range(len(spec.strides)))
    return tuple(given[spec.position(s)] for s in LEVELS)  # type: ignore[index]


def _fit_all(where: str, observed: Mapping[str, Any], python: str) -> Learned:
    run = observed.get("trials", {}).get("image", {})
    if "load" in observed or re.search(r"No module named '(timm|torchvision)\b", str(run.get("error", ""))):
        raise YolopatchError(
            f"{where}: timm is not installed for {python}; install yolopatch's extra (pip install "
            "'yolopatch[timm]', with a torchvision built for your torch) or probe with the Python that has it "
            "(--installed --python PATH)."
        )
    if "Unknown model" in str(run.get("error", "")) or "RuntimeError: Unknown" in str(run.get("error", "")):
        raise YolopatchError(f"{where}: timm has no model of that name ({run['error']}).")
    return fit_outputs(where, observed, python, "timm")


def fit_timm(where: str, observed: Mapping[str, Any], python: str, indices: tuple[int, ...]) -> Learned:
    """The second probe, at the chosen out_indices: exactly strides 8, 16 and 32."""
    learned = _fit_all(where, observed, python)
    spec = learned.backbone
    assert spec is not None
    if spec.strides != LEVELS:
        raise YolopatchError(
            f"{where}: with out_indices={list(indices)} timm gives strides {list(spec.strides)}, not 8, 16 and "
            "32; name the indices yourself with --set out_indices=[I,J,K]."
        )
    return learned


def learn_timm(
    model: str, values: Mapping[str, Any], run: Callable[[Mapping[str, dict]], Mapping[str, Any]], python: str
) -> tuple[Learned, ClassSource]:
    """Both probes (`run` calls the child): every feature map, then the chosen out_indices; the source with
    them as its out_indices' default."""
    where = f"{PREFIX}{model}"
    given = values.get("out_indices")
    indices = tuple(given) if given else chosen_indices(where, run(all_features(values)), python)
    learned = fit_timm(where, run(backbone_trials({**values, "out_indices": list(indices)})), python, indices)
    return learned, timm_source(model, indices, bool(values.get("pretrained", False)))


def timm_record(
    name: str, source: ClassSource, learned: Learned, values: Mapping[str, Any], target: str, config: Path
) -> UserOp:
    """The record of `timm:NAME` (`file` is `timm:NAME`: nothing of the user's to copy or hash)."""
    return UserOp(
        name=name,
        file=source.path,
        cls=source.name,
        rule=learned.rule,
        params=tuple(p.name for p in source.params),
        roles={p.name: "-" for p in source.params},
        defaults={p.name: p.default for p in source.params},
        values={k: v for k, v in values.items() if k != "out_indices"},
        evidence=(*learned.evidence, f"out_indices {source.params[0].default}: strides 8, 16 and 32"),
        target=target,
        config=config,
        backbone=learned.backbone,
    )
