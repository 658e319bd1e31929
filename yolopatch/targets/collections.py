"""Finding parse_model's module collections with `ast`, for every family (YOLOv5, YOLOv7, YOLOv9 and
ultralytics): `m in <collection>` tests on the row's module, the collection a list, tuple or set written
inline or bound to a local name first, bare or wrapped in one call (ultralytics' `base_modules =
frozenset({...})`).

The (c1, c2) collection is the one that holds Conv. The "insert n" collection is the one whose branch runs
`args.insert(2, n)`, whatever it holds (YOLOv5's C3, YOLOv7's DownC and SPPCSPC, YOLOv9's BottleneckCSP,
ultralytics' C2f and its kin).
Both are found by shape, not by line, so forks and reformatted files work as long as the test is there.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.inject import names_of, one_per_line

Collection = ast.List | ast.Tuple | ast.Set


def parse_model_of(tree: ast.Module) -> ast.FunctionDef | None:
    return next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )


def _channel_collection_and_kind(function: ast.FunctionDef | None) -> tuple[Collection, str] | None:
    """The collection that gives modules parse_model's (c1, c2) handling, the first one with Conv, and how
    it is written ("a set literal", "a local frozenset `base_modules` of a set literal (one name per line)")."""
    if function is None:
        return None
    local = _locals(function)
    for node in ast.walk(function):
        found = _tested(node, local)
        if found is not None and "Conv" in names_of(found[0].elts):
            return found
    return None


def required_channel_collection(
    function: ast.FunctionDef | None, path: Path, family: str, unknown: str, manual: str
) -> tuple[Collection, str]:
    """The (c1, c2) collection and how it is written, or the refusal that says why there is none (`unknown`:
    what a file without one may be, "release" or "fork"; `manual`: the steps by hand)."""
    if function is None:
        raise YolopatchError(f"{path}: has no parse_model function; is this {family}? {manual}")
    found = _channel_collection_and_kind(function)
    if found is None:
        raise YolopatchError(
            f"{path}: parse_model has no `if m in {{Conv, ...}}:` collection (an unknown {unknown}?); "
            f"nothing was changed. {manual}"
        )
    return found


def repeat_collection(function: ast.FunctionDef | None) -> Collection | None:
    """The collection whose branch passes the row's n as the block's third argument (None: none)."""
    if function is None:
        return None
    local = _locals(function)
    for node in ast.walk(function):
        found = _tested(node.test, local) if isinstance(node, ast.If) else None
        if found is not None and any(_inserts_n(statement) for statement in node.body):  # type: ignore[attr-defined]
            return found[0]
    return None


def _locals(function: ast.FunctionDef) -> dict[str, ast.expr]:
    """What parse_model binds to each plain local name (the last binding in the source, if it binds one twice)."""
    return {
        node.targets[0].id: node.value
        for node in ast.walk(function)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }


def _tested(node: ast.AST, local: Mapping[str, ast.expr]) -> tuple[Collection, str] | None:
    """The collection of a test `m in <collection>` and how it is written (None: `node` is not such a test)."""
    if not (
        isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "m"
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In)
    ):
        return None
    tested, via = node.comparators[0], ""
    if isinstance(tested, ast.Name) and tested.id in local:
        via = tested.id
        tested = local[via]
    if isinstance(tested, ast.Call) and isinstance(tested.func, ast.Name) and len(tested.args) == 1:
        wrapper = tested.func.id
        tested = tested.args[0]
        via = f"a local {wrapper} `{via}`" if via else f"a {wrapper}"
    if not isinstance(tested, (ast.List, ast.Tuple, ast.Set)):
        return None
    literal = {ast.Set: "set", ast.Tuple: "tuple", ast.List: "list"}[type(tested)]
    kind = f"{via} of a {literal} literal" if via else f"a {literal} literal"
    return tested, kind + (" (one name per line)" if one_per_line(tested.elts) else "")


def _inserts_n(statement: ast.stmt) -> bool:
    """`args.insert(2, n)`."""
    call = statement.value if isinstance(statement, ast.Expr) else None
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "insert"
        and isinstance(call.func.value, ast.Name)
        and call.func.value.id == "args"
        and len(call.args) == 2
        and isinstance(call.args[0], ast.Constant)
        and call.args[0].value == 2
        and isinstance(call.args[1], ast.Name)
        and call.args[1].id == "n"
    )
