"""The users' files as modules of their own in a target (`inject`), and their removal (`--revert`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from yolopatch.files import FileChange
from yolopatch.inject import Block, own_module_change, own_module_removal, own_modules_of
from yolopatch.userop.adapter import copied_module, module_stem
from yolopatch.userop.source import ImportKind, TargetImport


def copy_changes(
    operators: Sequence[Any],
    folder: Path,
    copies: Mapping[Path, str],
    kind: ImportKind,
    point: Callable[[TargetImport], str],
    force: bool,
    actions: list[str],
    shown: str = "",
) -> list[FileChange]:
    """The users' files as modules of their own in `folder` (their imports of the target's code, `kind`,
    pointed where `point` says), one change per file however many operators come from it; `shown` prefixes
    the file in the action lines."""
    changes: dict[Path, FileChange] = {}
    for op in operators:
        if op.user is None or op.user.file.as_posix().startswith("timm:"):  # timm:NAME: no file to copy
            continue
        path = folder / f"{module_stem(op.user)}.py"
        change = own_module_change(path, copies.get(path), copied_module(op.user, kind, point), force)
        if change.changed and path not in changes:
            verb = "created" if change.old is None else "updated"
            actions.append(
                f"{shown}{path.name}: {verb}, a copy of {op.user.file.name} (the class {op.user.cls})"
            )
        changes[path] = change
    return list(changes.values())


def copy_removals(
    folder: Path,
    copies: Mapping[Path, str],
    blocks: Iterable[Block],
    removed: Sequence[Block],
    force: bool,
    actions: list[str],
    shown: str = "",
) -> list[FileChange]:
    """The copied modules that no block staying imports from any more."""
    staying = {m for b in blocks if b not in removed for m in own_modules_of(b.body)}
    leaving = {m for b in removed for m in own_modules_of(b.body)} - staying
    changes = []
    for module in sorted(leaving):
        path = folder / f"{module}.py"
        if path in copies:
            changes.append(own_module_removal(path, copies[path], force))
            actions.append(f"{shown}{path.name}: deleted (yolopatch's copy of your module)")
    return changes
