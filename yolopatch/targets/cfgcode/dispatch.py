"""A darknet-cfg codebase's dispatch on a section's type (`if DEF["type"] == "x": ... elif ...`), found by
`ast`: the branches it has, where a new one goes, and the tagged branches yolopatch added (`# yolopatch: NAME`
on the branch's first line) that a revert removes exactly. Also the function such a branch calls to build an
operator from its section's keys, and the text of an operator's block."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from yolopatch.checkpoints import in_view, listing
from yolopatch.darknet.forms import key_name, native_form, section_type
from yolopatch.errors import YolopatchError
from yolopatch.inject import (
    Block,
    InjectPlan,
    block_body,
    block_edits,
    line_end,
    offset,
    refuse_edited,
    refuse_revert_edited,
    restore_classes,
)
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.paste import Paste, operator_paste, template_paste
from yolopatch.splice import Edit, newline_of

REGISTRY = "models.py"  # where a block's recorded registrations are

TAG = "# yolopatch: "


@dataclass(frozen=True)
class Chain:
    """One dispatch: the `if DEF["type"] == ...` chain's branches (type, node; None: a test of another
    shape, such as `in [...]`), the types it registers, and where a new branch goes."""

    head: ast.If
    branches: tuple[tuple[str | None, ast.If], ...]
    types: frozenset[str]
    subject: str  # the source of DEF["type"]
    quote: str

    def branch_of(self, kind: str) -> ast.If | None:
        return next((node for found, node in self.branches if found == kind), None)

    def before(self, node: ast.If) -> ast.If:
        return next(b for _, b in self.branches if b.orelse == [node])

    def insertion(self, text: str, branches: Sequence[str]) -> list[Edit]:
        """The new branches after the chain's last `elif` (before its `else:`, which stays last)."""
        if not branches:
            return []
        last = self.branches[-1][1].body[-1]
        at = line_end(text, last.end_lineno or last.lineno)
        return [Edit(at, at, "".join(branches))]

    def removals(self, text: str, name: str) -> list[Edit]:
        """The branches tagged for the operator `name`, each from the end of the branch before it."""
        edits = []
        for _, node in self.branches:
            if tagged(text, node, name):
                previous = self.before(node).body[-1]
                start = line_end(text, previous.end_lineno or previous.lineno)
                end = line_end(text, node.body[-1].end_lineno or node.body[-1].lineno)
                edits.append(Edit(start, end, ""))
        return edits


def find_chain(
    text: str,
    function: ast.FunctionDef,
    path: Path,
    subject: str,
    names: Sequence[str],
    shape: str,
    hint: str,
) -> Chain:
    """The first `if SUBJECT["type"] ...` chain in `function` (the dispatch), checked to use the names the
    branches yolopatch writes use; `shape` names the codebase for the error, `hint` the step by hand."""
    head = next((n for n in ast.walk(function) if isinstance(n, ast.If) and _subject(n) is not None), None)
    bound = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    lacking = [name for name in names if name not in bound]
    if head is None or lacking or _subject(head) != subject:
        raise YolopatchError(
            f"{path}:{function.lineno}: {function.name} is not in {shape}'s shape (a dispatch on "
            f'{subject}["type"] using {", ".join(names)}); nothing was changed. {hint}'
        )
    branches: list[tuple[str | None, ast.If]] = []
    types: set[str] = set()
    node: ast.If | None = head
    while node is not None:
        compared = _compared(node)
        equal = isinstance(node.test, ast.Compare) and isinstance(node.test.ops[0], ast.Eq)
        branches.append((compared[0] if len(compared) == 1 and equal else None, node))
        types.update(compared)
        node = node.orelse[0] if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If) else None
        if node is not None and _subject(node) is None:
            node = None
    test = head.test
    assert isinstance(test, ast.Compare)
    source = ast.get_source_segment(text, test.left) or f'{subject}["type"]'
    segment = ast.get_source_segment(text, test.comparators[0]) or '"'
    quote = "'" if segment.startswith("'") or "['" in segment else '"'
    return Chain(head, tuple(branches), frozenset(types), source, quote)


def _subject(node: ast.If) -> str | None:
    """DEF when the test reads `DEF["type"] == ...` or `DEF["type"] in [...]` (None: another test)."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return None
    left = test.left
    if (
        isinstance(left, ast.Subscript)
        and isinstance(left.value, ast.Name)
        and isinstance(left.slice, ast.Constant)
        and left.slice.value == "type"
    ):
        return left.value.id
    return None


def _compared(node: ast.If) -> list[str]:
    test = node.test
    assert isinstance(test, ast.Compare)
    right = test.comparators[0]
    elts = right.elts if isinstance(right, (ast.List, ast.Tuple, ast.Set)) else [right]
    return [e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def tagged(text: str, node: ast.stmt, name: str) -> bool:
    """Whether the statement's first line carries yolopatch's tag for the operator `name`."""
    start = offset(text, node.lineno, 0)
    return text[start : line_end(text, node.lineno)].rstrip().endswith(f"{TAG}{name}")


def branch_text(text: str, chain: Chain, kind: str, name: str, body: Sequence[str]) -> str:
    """`elif DEF["type"] == "kind":  # yolopatch: NAME` and its body's lines, in the chain's indentation."""
    newline = newline_of(text)
    start = offset(text, chain.head.lineno, 0)
    indent = text[start : offset(text, chain.head.lineno, chain.head.col_offset)]
    first = chain.head.body[0]
    inner = text[offset(text, first.lineno, 0) : offset(text, first.lineno, first.col_offset)]
    q = chain.quote
    lines = "".join(f"{newline}{inner}{line}" for line in body)
    return f"{newline}{indent}elif {chain.subject} == {q}{kind}{q}:  {TAG}{name}{lines}"


def builder(op: Operator, kind: str, value: str = "module_def[key]") -> str:
    """The function create_modules' branch calls: builds the operator from its section's keys (filters, the
    options darknet-style, stride where it has one), adds it to the layer and returns its filters. `value`
    reads a key's value as text (a codebase whose reader makes numbers of them wraps it in str())."""
    pairs = tuple((key_name(o.name), o.name) for o in op.options)
    stride = '    arguments["s"] = int(module_def.get("stride", 1))\n' if op.strided else ""
    return (
        f"def _yolopatch_{kind}(module_def, output_filters, modules, name):\n"
        f'    """[{kind}] as create_modules builds it: {op.name}(c1, c2, ...) from the section\'s keys; returns its '
        'filters."""\n'
        "    c1 = output_filters[-1]\n"
        '    c2 = int(module_def.get("filters", c1))\n'
        "    arguments = {}\n"
        f"    for key, argument in {pairs!r}:\n"
        "        if key in module_def:\n"
        f"            value = {value}.strip().lower()\n"
        '            if value in ("true", "false"):\n'
        '                arguments[argument] = value == "true"\n'
        "            else:\n"
        '                arguments[argument] = float(value) if "." in value or "e" in value else int(value)\n'
        f"{stride}"
        f"    modules.add_module(name, {op.name}(c1, c2, **arguments))\n"
        "    return c2\n"
    )


def block_paste(op: Operator, bound: set[str], value: str = "module_def[key]") -> Paste:
    """What the operator's block holds: yolopatch's common blocks where the template builds on them and the
    file lacks them, the operator's classes, and the builder create_modules' branch calls. The native form's
    block holds only a note: its layers are torch's own."""
    if native_form(op):
        note = f'_YOLOPATCH_{op.name.upper()} = "darknet\'s own {native_form(op)}, registered above"\n'
        return Paste(note, (), frozenset(), ())
    paste = operator_paste(op)
    parts, imports = [], list(paste.imports)
    if paste.requires - bound:
        common = template_paste("common")
        parts.append(common.body)
        imports += [i for i in common.imports if "__future__" not in i[1]]  # only at a file's top
    parts += [paste.body, builder(op, section_type(op), value)]
    return Paste(
        "\n\n".join(p.rstrip("\n") + "\n" for p in parts), tuple(imports), frozenset(), paste.classes
    )


def with_checkpoints(
    plan: InjectPlan, removed: Iterable[str], roots: Sequence[Path], module: str
) -> InjectPlan:
    """A revert plan naming the checkpoints in view that pickle the classes it removes (by `module`)."""
    removed = list(removed)
    if not plan.changed:
        return plan
    held = in_view(list(roots), module, removed, Path.cwd())
    needed = tuple(name for name in removed if any(name in classes for classes in held.values()))
    if not held:
        return plan
    warning = (
        f"{len(held)} checkpoint(s) hold {', '.join(needed)} layers ({listing(list(held))}); a model saved whole "
        f"pickles the class by name, so they load only while {', '.join(needed)} is injected."
    )
    return replace(plan, warnings=(warning,), checkpoints=tuple(held), needed=needed)


def operator_block(
    text: str,
    path: Path,
    blocks: Mapping[str, Block],
    op: Operator,
    bound: set[str],
    outside: list[ast.stmt],
    registered: Sequence[str],
    force: bool,
    actions: list[str],
    value: str = "module_def[key]",
) -> list[Edit]:
    """The edits that write (or rewrite) `op`'s tagged block in the codebase's models file, recording the
    dispatches it `registered` in (`value`: how the builder reads a section's key)."""
    paste = block_paste(op, bound, value)
    block = blocks.get(op.name)
    body = block_body(paste, bound)
    if not force:
        refuse_edited(block, body, path)
    foreign = [n for n in outside if isinstance(n, ast.ClassDef) and n.name in paste.classes]
    return block_edits(path, text, op.name, REGISTRY, body, block, foreign, set(registered), force, actions)


def block_removal(text: str, path: Path, block: Block, force: bool, actions: list[str]) -> list[Edit]:
    """The edits that remove an operator's block (and restore a class its --force injection disabled)."""
    if not force:
        refuse_revert_edited(block, path)
    edits = [Edit(block.start, block.end, "")]
    actions.append(f"{path.name}: removed {block.name} (yolopatch {block.version})")
    if block.forced:
        builtin = OPERATORS.get(block.name.lower())
        edits += restore_classes(text, template_paste(builtin.template).classes if builtin else (block.name,))
        actions.append(f"{path.name}: restored the class {block.name} that --force had disabled")
    return edits
