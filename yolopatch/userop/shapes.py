"""What a class's source shows of its outputs, without importing it: a backbone states its widths or returns
a list of maps."""

from __future__ import annotations

import ast
from collections.abc import Sequence

_STATED_WIDTHS = frozenset({"width_list", "channel", "feature_info"})


def backbone_like(lineage: Sequence[ast.ClassDef], forward: ast.FunctionDef | None) -> bool:
    """The class states its outputs' widths (`self.width_list`, `self.channel`, `self.feature_info`), or a
    forward of it returns a list or tuple display of two or more maps, or a name bound to a list."""
    for cls in lineage:
        for sub in ast.walk(cls):
            if (
                isinstance(sub, ast.Attribute)
                and isinstance(sub.ctx, ast.Store)
                and sub.attr in _STATED_WIDTHS
            ):
                return True
    if forward is None:
        return False
    lists = {
        t.id
        for sub in ast.walk(forward)
        if isinstance(sub, ast.Assign) and isinstance(sub.value, (ast.List, ast.ListComp))
        for t in sub.targets
        if isinstance(t, ast.Name)
    }
    for sub in ast.walk(forward):
        if isinstance(sub, ast.Return) and sub.value is not None:
            value = sub.value
            if isinstance(value, (ast.List, ast.Tuple)) and len(value.elts) >= 2:
                return True
            if isinstance(value, ast.Name) and value.id in lists:
                return True
    return False


def head_refusal(where: str, heads: Sequence[str], inherited: str, fixes: str) -> str:
    """Why a detection head (it takes nc or anchors) is refused, and what to do: a subclass of the target's
    own Detect-like class, or a plain copy of one, which goes wrong silently when registered by hand."""
    takes = f"{where} takes {', '.join(heads)}: a detection head"
    if inherited.split(".")[-1].endswith("Detect"):
        return (
            f"{takes} built on {inherited}. `ops add` takes heads that subclass a target's own Detect where it "
            "knows how to register them; register this one by hand in the "
            "target's own Detect collection (so every isinstance(m, Detect) in its trainer, stride computation "
            "and loss applies) and build it with `yolopatch check --repo`."
        )
    return (
        f"{takes} written as a plain copy (not a subclass of the target's Detect): registered, it would go "
        "wrong silently: the model computes no strides for it (they stay 0) and the loss expects Detect's own "
        f"outputs. Fix: subclass Detect, the target's own ({fixes}); then run `ops add` again."
    )
