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
from collections.abc import Mapping, Sequence
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.inject import Block, names_of, one_per_line
from yolopatch.splice import Edit, newline_of

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


def branch_collections(function: ast.FunctionDef | None) -> list[tuple[Collection, str]]:
    """Every `if m in <collection>:` branch of parse_model: its collection and its body's source."""
    if function is None:
        return []
    local = _locals(function)
    found = []
    for node in ast.walk(function):
        tested = _tested(node.test, local) if isinstance(node, ast.If) else None
        if tested is not None:
            body = "\n".join(ast.unparse(statement) for statement in node.body)  # type: ignore[attr-defined]
            found.append((tested[0], body))
    return found


def detect_collection(function: ast.FunctionDef | None) -> Collection | None:
    """The target's own Detect collection: the `m in {Detect, ...}` whose branch hands the row its inputs'
    channels (`[ch[x] for x in f]`); None where parse_model has none."""
    return next(
        (
            c
            for c, body in branch_collections(function)
            if "Detect" in names_of(c.elts) and "ch[x] for x in f" in body
        ),
        None,
    )


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


# parse_model's fusion branch: one for every fusion class (each carries its rule in `yolopatch_fusion`)
FUSION_MARK = "# yolopatch: rows that fuse a list of inputs; `yolopatch inject --revert` removes this branch"


def _channel_branch(function: ast.FunctionDef) -> ast.If | None:
    """The `if m in {Conv, ...}:` statement of parse_model."""
    local = _locals(function)
    for node in ast.walk(function):
        if isinstance(node, ast.If):
            found = _tested(node.test, local)
            if found is not None and "Conv" in names_of(found[0].elts):
                return node
    return None


def _scale_expression(branch: ast.If) -> str:
    """How the (c1, c2) branch scales the yaml's c2 (`make_divisible(min(c2, max_channels) * width, 8)`),
    written for a name `c` (`c`: a fork whose branch does not scale it)."""
    for node in ast.walk(branch):
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "c2"
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "id", "") == "make_divisible"
        ):
            value = ast.parse(ast.unparse(node.value), mode="eval")
            for name in ast.walk(value):
                if isinstance(name, ast.Name) and name.id == "c2":
                    name.id = "c"
            return ast.unparse(value.body)
    return "c"


def fusion_branch(text: str, tree: ast.Module, path: Path, newline: str) -> tuple[int, str] | None:
    """Where parse_model's fusion branch goes (before the (c1, c2) test's first `elif`/`else`, or after
    its body) and its text; None when it is there already. It reads the row's inputs' channels and asks
    the class for its (c2, args), scaling an output-channel argument as the (c1, c2) branch does."""
    if FUSION_MARK in text:
        return None
    at, indent, scale = _after_channel_branch(text, tree, path, "fusion rows")
    body = [
        f'{indent}elif getattr(m, "yolopatch_fusion", None):  {FUSION_MARK}',
        f"{indent}    c1 = [ch[x] for x in f]",
        f"{indent}    c2, args = m.yolopatch_fusion(c1, args, lambda c: {scale})",
    ]
    return at, "".join(line + newline for line in body)


def _after_channel_branch(text: str, tree: ast.Module, path: Path, what: str) -> tuple[int, str, str]:
    """Where a branch of ours goes in parse_model (before the (c1, c2) test's first `elif`/`else`, or after
    its body), its indent, and the (c1, c2) branch's width scaling of a name `c`."""
    function = parse_model_of(tree)
    branch = _channel_branch(function) if function is not None else None
    if branch is None:
        raise YolopatchError(
            f"{path}: parse_model has no `if m in {{Conv, ...}}:` branch; yolopatch cannot add the branch that "
            f"builds {what} after it. Nothing was changed."
        )
    scale = _scale_expression(branch)
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))
    if branch.orelse:
        first = branch.orelse[0].lineno - 1
        # `elif` is on the nested If's line; an `else:` is on its own line above the first statement
        at = first if lines[first].lstrip().startswith("elif") else _else_line(lines, first)
    else:
        at = branch.body[-1].end_lineno or branch.lineno
    return starts[at], " " * branch.col_offset, scale


def _else_line(lines: list[str], first: int) -> int:
    at = first - 1
    while at > 0 and not lines[at].lstrip().startswith("else"):
        at -= 1
    return at


def fusion_branch_edits(
    text: str, tree: ast.Module, path: Path, label: str, fusion: Sequence[str], actions: list[str]
) -> list[Edit]:
    """parse_model's one branch for fusion rows, when fusion operators (`fusion`) are injected and it is
    missing; `label` names the file in `actions`."""
    found = fusion_branch(text, tree, path, newline_of(text)) if fusion else None
    if found is None:
        return []
    actions.append(
        f"{label}: added parse_model's fusion branch (rows with a `from` list whose class carries its rule: "
        f"{', '.join(fusion)})"
    )
    return [Edit(found[0], found[0], found[1])]


def fusion_branch_removal(text: str, label: str, left: Sequence[Block], actions: list[str]) -> list[Edit]:
    """The fusion branch goes with the last fusion operator's block (`left`: the blocks that stay)."""
    span = fusion_branch_span(text)
    if span is None or any("yolopatch_fusion" in block.body for block in left):
        return []
    actions.append(f"{label}: removed parse_model's fusion branch")
    return [Edit(span[0], span[1], "")]


def fusion_branch_span(text: str) -> tuple[int, int] | None:
    """The fusion branch's three lines in `text` (None: it has none)."""
    mark = text.find(FUSION_MARK)
    if mark < 0:
        return None
    start = text.rfind("\n", 0, mark) + 1
    end = start
    for _ in range(3):
        end = text.index("\n", end) + 1
    return start, end
