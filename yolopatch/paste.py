"""What `inject` pastes for an operator, derived from its template module (real, importable code).

The template's own imports are dropped: the target file has torch and nn already, and its own Conv stands in
for yolopatch's. Imports the target lacks are kept; names taken from yolopatch must exist in the target.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from yolopatch.operators.spec import Operator


@dataclass(frozen=True)
class Paste:
    body: str  # the template from its first class on, newlines as "\n"
    imports: tuple[tuple[frozenset[str], str], ...]  # (names it binds, import statement) of torch and stdlib
    requires: frozenset[str]  # names the template takes from yolopatch: the target must define them
    classes: tuple[str, ...]


@cache
def template_source(template: str) -> str:
    return resources.files("yolopatch.templates").joinpath(f"{template}.py").read_text(encoding="utf-8")


@cache
def template_paste(template: str) -> Paste:
    source = template_source(template)
    tree = ast.parse(source)
    body = [n for n in tree.body if not _is_docstring(n)]
    first = next(n for n in body if not isinstance(n, (ast.Import, ast.ImportFrom)))
    imports: list[tuple[frozenset[str], str]] = []
    requires: set[str] = set()
    for node in body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("yolopatch"):
            requires.update(alias.asname or alias.name for alias in node.names)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append((frozenset(_bound(node)), ast.get_source_segment(source, node) or ""))
    start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
    lines = source.split("\n")[start - 1 :]
    classes = tuple(n.name for n in body if isinstance(n, ast.ClassDef))
    return Paste("\n".join(lines).rstrip("\n") + "\n", tuple(imports), frozenset(requires), classes)


def operator_paste(op: Operator) -> Paste:
    """What inject pastes for an operator: its template, or what yolopatch wrote for it (a user's adapter
    class, which imports the user's class from the copied module; an `--into` class)."""
    if op.generated is not None:
        return op.generated  # type: ignore[no-any-return]
    return template_paste(op.template)


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


def _bound(node: ast.Import | ast.ImportFrom) -> list[str]:
    return [alias.asname or alias.name.split(".")[0] for alias in node.names]
