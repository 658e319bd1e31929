"""Targets: the families of codebases with their own parse_model, one package each, and their registry.

Adding a family is one package here and one line in TARGETS. Nothing outside yolopatch.targets names a
family: the CLI and the core ask the registry (`target_for` a yaml, `locate` a checkout) and the Target
(yolopatch.targets.base) they get.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from yolopatch.channels import modules_of
from yolopatch.child import Settings
from yolopatch.csp import CspBlock
from yolopatch.errors import YolopatchError
from yolopatch.targets.base import Location, Target
from yolopatch.targets.pytorch_yolov4 import target as pytorch_yolov4
from yolopatch.targets.pytorchyolo import target as pytorchyolo
from yolopatch.targets.ultralytics import target as ultralytics
from yolopatch.targets.yolov5 import target as yolov5
from yolopatch.targets.yolov7 import target as yolov7
from yolopatch.targets.yolov9 import target as yolov9
from yolopatch.userop.source import ImportKind

# In order of preference where two claim the same yaml equally (the most used family first).
TARGETS: tuple[Target, ...] = (
    yolov5.TARGET,
    ultralytics.TARGET,
    yolov7.TARGET,
    yolov9.TARGET,
    pytorchyolo.TARGET,
    pytorch_yolov4.TARGET,
)


def target_for(values: Mapping[str, Any]) -> Target:
    """The family whose parse_model a yaml (its parsed top-level values) is written for."""
    modules = modules_of(values)
    scores = [target.claims(values, modules) for target in TARGETS]
    return TARGETS[scores.index(max(scores))]


def target_named(name: str) -> Target:
    return next(target for target in TARGETS if target.name == name)


def locate(repo: Path) -> tuple[Target, Location]:
    """The target whose checkout or package `repo` is."""
    for target in sorted(TARGETS, key=lambda t: t.fallback):
        found = target.locate(repo)
        if found is not None:
            return target, found
    if not repo.exists():
        raise YolopatchError(f"{repo}: no such folder.")
    raise YolopatchError(
        f"{repo}: not a checkout yolopatch knows ({', '.join(t.name for t in TARGETS)}): found no "
        "models/yolo.py with models/common.py, no ultralytics/nn/tasks.py, no pytorchyolo/models.py, no models/models.py or root models.py with utils/parse_config.py. Pass the "
        "checkout's root folder."
    )


def enclosing(path: Path) -> Path | None:
    """The checkout a file sits in (relative to the working folder when it is below it), of any target."""
    for folder in path.resolve().parents:
        if _may_hold_code(folder) and any(t.locate(folder) is not None for t in TARGETS):
            try:
                return folder.relative_to(Path.cwd())
            except ValueError:
                return folder
    return None


def beside(folder: Path, target: Target) -> Path | None:
    """A checkout of `target` among `folder`'s subfolders (a clone beside the yaml, `yolov5/` next to
    `yolov5s.yaml`), relative to the working folder when it is below it; the first in name order."""
    try:
        children = sorted(p for p in folder.resolve().iterdir() if p.is_dir() and _may_hold_code(p))
    except OSError:
        return None
    for child in children[:50]:
        if target.locate(child) is not None and _family_of(child) is target:
            try:
                return child.relative_to(Path.cwd())
            except ValueError:
                return child
    return None


def installable() -> list[Target]:
    """The targets `inject --installed` can patch: the packages Python imports."""
    return [target for target in TARGETS if target.installable]


def installable_names() -> str:
    """Their package names, for help and errors: `yolov5 or ultralytics or ...`."""
    return " or ".join(target.installable for target in installable())


def csp_blocks() -> dict[str, CspBlock]:
    """Every family's CSP blocks (`--into`), by yaml name."""
    return {name: block for target in TARGETS for name, block in target.rules.csp.items()}


def import_kinds() -> list[ImportKind]:
    """How users' files import each family's code; families of one layout share a kind (their prefixes
    joined)."""
    kinds: dict[str, ImportKind] = {}
    for target in TARGETS:
        kind = target.imports
        known = kinds.get(kind.name)
        prefixes = tuple(dict.fromkeys([*(known.prefixes if known else ()), *kind.prefixes]))
        kinds[kind.name] = ImportKind(
            kind.name,
            prefixes,
            kind.example,
            _union(known.heads if known else (), kind.heads),
            _union(known.head_modules if known else (), kind.head_modules),
            "; ".join(fix for fix in (known.head_fix if known else "", kind.head_fix) if fix),
        )
    return list(kinds.values())


def _union(first: tuple[str, ...], second: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def child_settings() -> Settings:
    """What any family's code reads from the environment, for a child that may import any of them (the
    probe of a user's file)."""
    folders = {k: v for target in TARGETS for k, v in target.child_settings.folders.items()}
    fixed = {k: v for target in TARGETS for k, v in target.child_settings.fixed.items()}
    return Settings(folders, fixed)


def _may_hold_code(folder: Path) -> bool:
    """A cheap look before asking every target: a models/ folder (YOLOv5, YOLOv7, YOLOv9, PyTorch_YOLOv4), a
    root models.py (the ultralytics/yolov3 archive, a package folder) or an installable package's folder (a
    clone of ultralytics or pytorchyolo)."""
    return (
        (folder / "models").is_dir()
        or (folder / "models.py").is_file()
        or any((folder / t.installable).is_dir() for t in TARGETS if t.installable)
    )


def _family_of(repo: Path) -> Target | None:
    """The family `locate` gives a checkout (a fallback family claims any checkout of its layout: YOLOv5
    that of a YOLOv9 package too)."""
    try:
        return locate(repo)[0]
    except YolopatchError:
        return None
