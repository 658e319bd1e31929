"""A user's detection head in a checkout (#30): the user's file pasted into yolo.py as a block before
parse_model, and the head's name added to parse_model's own Detect registration.

yolo.py, not a module of its own beside common.py: the head subclasses Detect, which yolo.py defines, and a
module importing `models.yolo` would import yolo.py a second time when it runs as a script (`python
models/yolo.py --cfg ...`), where the head would subclass the other copy's Detect and every
`isinstance(m, Detect)` of the script's model would miss it. Pasted, it subclasses the Detect of the yolo.py
that builds it, as the posts' "paste the class into yolo.py" does.

The registration is the release's own: YOLOv5 v6.2 on test `m in {Detect, Segment}` (the name is added);
v4.0 to v6.1 test `m is Detect`, which becomes `m in {Detect, NAME}`; revert removes the name, and a set of
the base alone becomes `m is Detect` again (no release writes `m in {Detect}`).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.inject import line_end, names_insertion, names_of, names_removal, newline_of, offset
from yolopatch.operators.spec import Operator
from yolopatch.splice import Edit, splice
from yolopatch.userop.adapter import head_adapter_source
from yolopatch.userop.source import ImportKind, TargetImport, read_class


@dataclass(frozen=True)
class DetectSite:
    """parse_model's test that gives the head row its inputs' channels: `m is Detect` or `m in {Detect, ...}`."""

    test: ast.Compare
    collection: ast.Set | ast.List | ast.Tuple | None  # None: the `is` form

    def names(self) -> list[str]:
        if self.collection is None:
            return [ast.unparse(self.test.comparators[0])]
        return names_of(self.collection.elts)


def detect_site(function: ast.FunctionDef | None, base: str) -> DetectSite | None:
    """The branch of parse_model that tests for `base` and appends its inputs' channels, `[ch[x] for x in f]`
    (None: none)."""
    for node in ast.walk(function) if function is not None else ():
        if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
            continue
        test = node.test
        if not (isinstance(test.left, ast.Name) and test.left.id == "m" and len(test.ops) == 1):
            continue
        body = "\n".join(ast.unparse(statement) for statement in node.body)
        if "args.append([ch[x" not in body or "for x in f]" not in body:  # v4.0: ch[x + 1]
            continue
        tested = test.comparators[0]
        if isinstance(test.ops[0], ast.Is) and isinstance(tested, ast.Name) and tested.id == base:
            return DetectSite(test, None)
        if isinstance(test.ops[0], ast.In) and isinstance(tested, (ast.Set, ast.List, ast.Tuple)):
            if base in names_of(tested.elts):
                return DetectSite(test, tested)
    return None


def registration(text: str, site: DetectSite, base: str, names: Sequence[str]) -> list[Edit]:
    """Add `names` to the Detect registration (the `is` form becomes a set of the base and them)."""
    missing = [n for n in names if n not in site.names()]
    if not missing:
        return []
    if site.collection is not None:
        return [names_insertion(text, site.collection.elts, missing)]
    return [_replaced(text, site.test, f"m in {{{', '.join([base, *missing])}}}")]


def unregistration(text: str, site: DetectSite, base: str, names: Sequence[str]) -> list[Edit]:
    """The inverse of `registration`: the names removed, `m is Detect` back where only the base stays."""
    gone = [n for n in names if n in site.names()]
    if not gone or site.collection is None:
        return []
    staying = [n for n in site.names() if n not in gone]
    if staying == [base] and isinstance(site.collection, ast.Set):
        return [_replaced(text, site.test, f"m is {base}")]
    return names_removal(text, site.collection.elts, gone)


def _replaced(text: str, node: ast.expr, written: str) -> Edit:
    start = offset(text, node.lineno, node.col_offset)
    end = offset(text, node.end_lineno or node.lineno, node.end_col_offset or 0)
    return Edit(start, end, written)


def block_position(text: str, tree: ast.Module, path: Path) -> int:
    """Where a head's block goes: at the start of the line after the statement before parse_model (its two
    blank lines then follow the block)."""
    body = tree.body
    index = next(
        (i for i, n in enumerate(body) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )
    if not index:
        raise YolopatchError(f"{path}: defines no parse_model after its classes; nothing was changed.")
    before = body[index - 1]
    return line_end(text, before.end_lineno or before.lineno) + len(newline_of(text))


def head_body(
    op: Operator, kind: ImportKind, point: Callable[[TargetImport], str], defined: set[str], yolo: Path
) -> str:
    """The block's lines: the user's file (its imports of yolo.py dropped: the names are yolo.py's own; its
    other imports of the target pointed where `point` says; a `__main__` section left out), then the class
    under the yaml's name, marked as a head of `op.head`."""
    user = op.user
    assert user is not None
    text = read_text(user.file).lstrip("\ufeff")
    tree = ast.parse(text, str(user.file))
    source = read_class(user.file, user.cls, [kind])
    clash = sorted(_defined(tree) & defined)
    if clash:
        raise YolopatchError(
            f"{user.file}: defines {', '.join(clash)}, which {yolo} defines too; pasted into it, yours would "
            "replace them. Rename yours, then `ops add` it again; nothing was changed."
        )
    edits = []
    heads = kind.head_modules
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            raise YolopatchError(
                f"{user.file}:{node.lineno}: `from __future__ import ...` cannot be pasted into {yolo.name} "
                "(a head goes there, after Detect); remove it from your file, then `ops add` it again."
            )
        if isinstance(node, ast.ImportFrom) and not node.level and _head_module(node.module or "", heads):
            kept = [f"{a.asname} = {a.name}" for a in node.names if a.asname and a.asname != a.name]
            edits.append(_statement(text, node, "\n".join(kept)))
        elif _main_section(node):
            edits.append(_statement(text, node, ""))
    rewrite = {i.module: point(i) for i in source.target_imports if point(i) != i.module}
    for node in tree.body:
        module = node.module if isinstance(node, ast.ImportFrom) and not node.level else None
        if module in rewrite and not _head_module(module or "", heads):
            start = text.index(module, offset(text, node.lineno, node.col_offset))  # type: ignore[arg-type]
            edits.append(Edit(start, start + len(module), rewrite[module]))  # type: ignore[arg-type]
    pasted = splice(text, edits).replace("\r\n", "\n").rstrip("\n")
    alias = f"_{user.cls}Base"
    return "\n".join([pasted, "", "", f"{alias} = {user.cls}", "", "", head_adapter_source(user, alias)])


def _head_module(module: str, heads: Sequence[str]) -> bool:
    """The module that defines the head's base (`models.yolo`), however the package is named."""
    return module in heads or module.endswith(".models.yolo")


def _main_section(node: ast.stmt) -> bool:
    """`if __name__ == "__main__":`, which would run when yolo.py is the script."""
    return (
        isinstance(node, ast.If)
        and isinstance(node.test, ast.Compare)
        and "__name__" in ast.unparse(node.test)
        and "__main__" in ast.unparse(node.test)
    )


def _statement(text: str, node: ast.stmt, written: str) -> Edit:
    """A top-level statement's lines replaced by `written` (removed with its line break when empty)."""
    start = offset(text, node.lineno, 0)
    end = line_end(text, node.end_lineno or node.lineno)
    if not written:
        end = min(len(text), end + len(newline_of(text)))
    return Edit(start, end, written)


def _defined(tree: ast.Module) -> set[str]:
    """The classes and functions a file defines at its top level, and the names it assigns there."""
    names = {n.name for n in tree.body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


def yolo_defined(tree: ast.Module, spans: Sequence[tuple[int, int]], text: str) -> set[str]:
    """What yolo.py itself defines at its top level, outside yolopatch's blocks (their `spans`)."""
    inside = [n for n in tree.body if any(s <= offset(text, n.lineno, n.col_offset) < e for s, e in spans)]
    return _defined(ast.Module(body=[n for n in tree.body if n not in inside], type_ignores=[]))
