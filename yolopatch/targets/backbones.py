"""parse_model's backbone branch, for every family without one of its own: rows whose class carries
`yolopatch_backbone` (a user's backbone, which returns a list of maps, and yolopatch's `Index`, which picks
one) get ultralytics' own convention from 8.3.66: `c2 = args[0]` (unscaled: the backbone's real widths) and
the constructor the rest. Ultralytics from 8.3.66 has that branch itself (`m in frozenset({TorchVision,
Index})`): a backbone is registered in its collection instead, and its own `Index` serves.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

from yolopatch.inject import Block, names_insertion, names_of, names_removal
from yolopatch.splice import Edit, newline_of
from yolopatch.targets.collections import (
    Collection,
    _after_channel_branch,
    branch_collections,
    parse_model_of,
)

BACKBONE_MARK = "# yolopatch: backbone rows and Index; `yolopatch inject --revert` removes this branch"


def list_collection(tree: ast.Module) -> Collection | None:
    """Ultralytics' own `m in frozenset({TorchVision, Index})` collection where its branch passes the row's
    args after the first (8.3.66 on); None where there is none, or it prepends c1, c2 (8.3.59 to 8.3.65)."""
    for collection, body in branch_collections(parse_model_of(tree)):
        if "TorchVision" in names_of(collection.elts):
            return None if "c1, c2" in body else collection
    return None


def backbone_branch_edits(
    text: str, tree: ast.Module, path: Path, label: str, names: Sequence[str], actions: list[str]
) -> list[Edit]:
    """The one branch for backbone and Index rows, when `names` are injected and it is missing."""
    if not names or BACKBONE_MARK in text:
        return []
    at, indent, _scale = _after_channel_branch(text, tree, path, "backbone rows")
    newline = newline_of(text)
    body = [
        f'{indent}elif getattr(m, "yolopatch_backbone", None):  {BACKBONE_MARK}',
        f"{indent}    c2, args = args[0], args[1:]",
    ]
    actions.append(
        f"{label}: added parse_model's backbone branch (rows whose class returns or picks a list of maps: "
        f"{', '.join(names)})"
    )
    return [Edit(at, at, "".join(line + newline for line in body))]


def backbone_branch_removal(text: str, label: str, left: Sequence[Block], actions: list[str]) -> list[Edit]:
    """The branch goes with the last block that needs it (`left`: the blocks that stay)."""
    mark = text.find(BACKBONE_MARK)
    if mark < 0 or any("yolopatch_backbone" in block.body for block in left):
        return []
    start = text.rfind("\n", 0, mark) + 1
    end = text.index("\n", text.index("\n", mark) + 1) + 1
    actions.append(f"{label}: removed parse_model's backbone branch")
    return [Edit(start, end, "")]


def backbone_registration(
    text: str, tree: ast.Module, path: Path, label: str, listed: Sequence[str], actions: list[str]
) -> tuple[list[str], list[Edit]]:
    """Backbones (and yolopatch's Index) in ultralytics' own TorchVision/Index collection where it has one
    (8.3.66 on), else in the one branch of ours: the names added to that collection, and the edits."""
    native = list_collection(tree)
    if native is None:
        return [], backbone_branch_edits(text, tree, path, label, listed, actions)
    missing = [n for n in listed if n not in names_of(native.elts)]
    if missing:
        actions.append(f"{label}: added {', '.join(missing)} to parse_model's own TorchVision/Index branch")
    return missing, [names_insertion(text, native.elts, missing)] if missing else []


def native_removal(text: str, tree: ast.Module, names: Sequence[str]) -> list[Edit]:
    """The inverse: the names inject added to the TorchVision/Index collection."""
    native = list_collection(tree)
    return names_removal(text, native.elts, list(names)) if native is not None and names else []
