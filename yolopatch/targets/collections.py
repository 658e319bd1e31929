"""Finding parse_model's module collections with `ast`, for the families whose parse_model is YOLOv5's
shape (YOLOv5, YOLOv7, YOLOv9): `if m in <list, tuple or set>:` tests on the row's module.

The (c1, c2) collection is the one that holds Conv. The "insert n" collection is the one whose branch runs
`args.insert(2, n)`, whatever it holds (YOLOv5's C3, YOLOv7's DownC and SPPCSPC, YOLOv9's BottleneckCSP).
Both are found by shape, not by line, so forks and reformatted files work as long as the test is there.
"""

from __future__ import annotations

import ast

from yolopatch.inject import names_of

Collection = ast.List | ast.Tuple | ast.Set


def parse_model_of(tree: ast.Module) -> ast.FunctionDef | None:
    return next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )


def _tested(node: ast.AST) -> Collection | None:
    """The collection of a test `m in <collection>` (None: `node` is not such a test)."""
    if (
        isinstance(node, ast.Compare)
        and isinstance(node.left, ast.Name)
        and node.left.id == "m"
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.In)
        and isinstance(node.comparators[0], (ast.List, ast.Tuple, ast.Set))
    ):
        return node.comparators[0]
    return None


def channel_collection(function: ast.FunctionDef | None) -> Collection | None:
    """The collection that gives modules parse_model's (c1, c2) handling: the one with Conv."""
    if function is None:
        return None
    for node in ast.walk(function):
        found = _tested(node)
        if found is not None and "Conv" in names_of(found.elts):
            return found
    return None


def repeat_collection(function: ast.FunctionDef | None) -> Collection | None:
    """The collection whose branch passes the row's n as the block's third argument (None: none)."""
    if function is None:
        return None
    for node in ast.walk(function):
        found = _tested(node.test) if isinstance(node, ast.If) else None
        if found is not None and any(_inserts_n(statement) for statement in node.body):  # type: ignore[attr-defined]
            return found
    return None


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
