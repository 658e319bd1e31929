"""Planning inject and revert in pytorchyolo's models.py: each operator's block appended to the file and its
section types registered in BOTH dispatches, create_modules' (which builds a layer and says its filters) and
Darknet.forward's (which runs it); the users' modules copied into the package.

A section type pytorchyolo does not know is built as an empty layer with the previous section's filters and
passed through in forward: a silent identity. That is what darknet's own `[avgpool]` and `[scale_channels]`
(the native SE) become there, so SE's block registers those two.

Every registration is an `elif` branch appended to a dispatch chain (found by `ast`: the `if`/`elif` chain
that compares `DEF["type"]`), tagged `# yolopatch: NAME` on its first line; a branch the codebase already
has for that type is left alone. A revert removes exactly the tagged branches of the operators it removes.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from yolopatch.checkpoints import in_view, listing
from yolopatch.darknet.forms import key_name, native_form, native_types, section_type
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange
from yolopatch.inject import (
    Block,
    InjectPlan,
    block_body,
    block_edits,
    bound_names,
    find_blocks,
    inside,
    line_end,
    offset,
    parse_python,
    refuse_edited,
    refuse_revert_edited,
    restore_classes,
    verify_compiles,
)
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.paste import Paste, operator_paste, template_paste
from yolopatch.splice import Edit, newline_of, splice
from yolopatch.targets.pytorchyolo.package import MODULE, Package, read_package
from yolopatch.userop.copies import copy_changes, copy_removals
from yolopatch.userop.source import ImportKind, TargetImport

REGISTRY = "models.py"  # where a block's recorded registrations are
IMPORTS = ImportKind("pytorchyolo", ("pytorchyolo.",), "from pytorchyolo.models import Upsample")
_TAG = "# yolopatch: "
# darknet's own layers of a native form, as create_modules builds them (c1: the input's filters) and as
# forward computes them (the names pytorchyolo's dispatches use)
_NATIVE_BUILD = {
    "avgpool": ("nn.AdaptiveAvgPool2d(1)", "output_filters[-1]"),
    "scale_channels": ("nn.Sequential()", 'output_filters[1:][int(module_def["from"])]'),
    "sam": ("nn.Sequential()", "output_filters[-1]"),
}
_NATIVE_FORWARD = {
    "scale_channels": 'layer_outputs[int(module_def["from"])] * x',
    "sam": 'layer_outputs[int(module_def["from"])] * x',
}


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


@dataclass(frozen=True)
class Sites:
    package: Package
    text: str
    tree: ast.Module
    create: Chain
    forward: Chain
    blocks: Mapping[str, Block]
    copies: Mapping[Path, str]


def find_sites(package: Package, texts: Mapping[Path, str]) -> Sites:
    path = package.models
    text = texts[path]
    tree = parse_python(text, path)
    create = next(
        (n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "create_modules"), None
    )
    darknet = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Darknet"), None)
    forward = None
    if darknet is not None:
        forward = next(
            (n for n in darknet.body if isinstance(n, ast.FunctionDef) and n.name == "forward"), None
        )
    if create is None or forward is None:
        missing = "def create_modules" if create is None else "class Darknet with a forward"
        raise YolopatchError(f"{path}: has no {missing}; is this pytorchyolo's models.py? {_by_hand()}")
    sites = Sites(
        package,
        text,
        tree,
        _chain(text, create, path, ("output_filters", "filters", "module_i", "modules")),
        _chain(text, forward, path, ("x", "module", "layer_outputs")),
        find_blocks(text, path),
        {p: t for p, t in texts.items() if p != path},
    )
    return sites


def _by_hand() -> str:
    return (
        "Register the section type by hand: an `elif` in create_modules that builds it and sets `filters`, and "
        "one in Darknet.forward that runs it."
    )


def _chain(text: str, function: ast.FunctionDef, path: Path, names: Sequence[str]) -> Chain:
    """The first `if DEF["type"] ...` chain in `function` (the dispatch), checked to use the names the
    branches yolopatch writes use."""
    head = next((n for n in ast.walk(function) if isinstance(n, ast.If) and _subject(n) is not None), None)
    bound = {n.id for n in ast.walk(function) if isinstance(n, ast.Name)}
    lacking = [name for name in names if name not in bound]
    if head is None or lacking or _subject(head) != "module_def":
        raise YolopatchError(
            f"{path}:{function.lineno}: {function.name} is not in pytorchyolo's shape (a dispatch on "
            f'module_def["type"] using {", ".join(names)}); nothing was changed. {_by_hand()}'
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
    subject = ast.get_source_segment(text, test.left) or 'module_def["type"]'
    constant = test.comparators[0]
    segment = ast.get_source_segment(text, constant) or '"'
    quote = "'" if segment.startswith("'") or "['" in segment else '"'
    return Chain(head, tuple(branches), frozenset(types), subject, quote)


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


def _tagged(text: str, node: ast.If, name: str) -> bool:
    """Whether the branch's first line carries yolopatch's tag for the operator `name`."""
    start = offset(text, node.lineno, 0)
    return text[start : line_end(text, node.lineno)].rstrip().endswith(f"{_TAG}{name}")


def _branch_text(text: str, chain: Chain, kind: str, name: str, body: Sequence[str]) -> str:
    """`elif DEF["type"] == "kind":  # yolopatch: NAME` and its body's lines, in the chain's indentation."""
    newline = newline_of(text)
    start = offset(text, chain.head.lineno, 0)
    indent = text[start : offset(text, chain.head.lineno, chain.head.col_offset)]
    first = chain.head.body[0]
    inner = text[offset(text, first.lineno, 0) : offset(text, first.lineno, first.col_offset)]
    q = chain.quote
    lines = "".join(f"{newline}{inner}{line}" for line in body)
    return f"{newline}{indent}elif {chain.subject} == {q}{kind}{q}:  {_TAG}{name}{lines}"


def _create_body(kind: str) -> list[str]:
    if kind in _NATIVE_BUILD:
        module, filters = _NATIVE_BUILD[kind]
        return [f"filters = {filters}", f'modules.add_module(f"{kind}_{{module_i}}", {module})']
    return [f'filters = _yolopatch_{kind}(module_def, output_filters, modules, f"{kind}_{{module_i}}")']


def _forward_body(kind: str) -> list[str]:
    return [f"x = {_NATIVE_FORWARD.get(kind, 'module(x)')}"]


def _builder(op: Operator, kind: str) -> str:
    """The function create_modules' branch calls: builds the operator from its section's keys (filters, the
    options darknet-style, stride where it has one), adds it to the layer and returns its filters."""
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
        "            value = module_def[key].strip().lower()\n"
        '            if value in ("true", "false"):\n'
        '                arguments[argument] = value == "true"\n'
        "            else:\n"
        '                arguments[argument] = float(value) if "." in value or "e" in value else int(value)\n'
        f"{stride}"
        f"    modules.add_module(name, {op.name}(c1, c2, **arguments))\n"
        "    return c2\n"
    )


def _paste(op: Operator, bound: set[str]) -> Paste:
    """What the operator's block holds: yolopatch's common blocks where the template builds on them and
    models.py lacks them, the operator's classes, and the builder create_modules' branch calls. The native
    form's block holds only a note: its layers are torch's own."""
    if native_form(op):
        note = f'_YOLOPATCH_{op.name.upper()} = "darknet\'s own {native_form(op)}, registered above"\n'
        return Paste(note, (), frozenset(), ())
    paste = operator_paste(op)
    parts, imports = [], list(paste.imports)
    if paste.requires - bound:
        common = template_paste("common")
        parts.append(common.body)
        imports += [i for i in common.imports if "__future__" not in i[1]]  # only at a file's top
    parts += [paste.body, _builder(op, section_type(op))]
    return Paste(
        "\n\n".join(p.rstrip("\n") + "\n" for p in parts), tuple(imports), frozenset(), paste.classes
    )


def plan_inject(
    package: Package, texts: Mapping[Path, str], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    sites = find_sites(package, texts)
    text, path = sites.text, package.models
    outside = [n for n in sites.tree.body if not inside(text, sites.blocks.values(), n)]
    bound = bound_names(outside)
    chains = {"create": sites.create, "forward": sites.forward}
    added: dict[str, list[str]] = {key: [] for key in chains}
    branches: dict[str, list[str]] = {key: [] for key in chains}
    actions: list[str] = []
    edits: list[Edit] = []
    for op in operators:
        sites_of_op: list[str] = []
        for key, chain in chains.items():
            for kind in native_types(op):
                if kind in chain.types or kind in added[key]:
                    continue
                body = _create_body(kind) if key == "create" else _forward_body(kind)
                branches[key].append(_branch_text(text, chain, kind, op.name, body))
                added[key].append(kind)
                sites_of_op.append(key)
        if sites_of_op:
            where = "create_modules and Darknet.forward"
            actions.append(
                f"{path.name}: registered [{'], ['.join(native_types(op))}] in {where} ({op.name})"
            )
        edits += _plan_block(sites, op, bound, outside, sorted(set(sites_of_op)), force, actions)
    for key, chain in chains.items():
        if branches[key]:
            last = chain.branches[-1][1]
            at = line_end(text, last.body[-1].end_lineno or last.body[-1].lineno)
            edits.append(Edit(at, at, "".join(branches[key])))
    new = splice(text, edits)
    copies = copy_changes(
        operators, package.root, sites.copies, IMPORTS, _pointer, force, actions, f"{package.root.name}/"
    )
    verify_compiles({path: new, **{c.path: c.new for c in copies}})
    return InjectPlan(f"pytorchyolo {package.kind}", (FileChange(path, text, new), *copies), tuple(actions))


def _pointer(imported: TargetImport) -> str:
    return imported.module


def _plan_block(
    sites: Sites,
    op: Operator,
    bound: set[str],
    outside: list[ast.stmt],
    registered: Sequence[str],
    force: bool,
    actions: list[str],
) -> list[Edit]:
    text, path = sites.text, sites.package.models
    paste = _paste(op, bound)
    block = sites.blocks.get(op.name)
    body = block_body(paste, bound)
    if not force:
        refuse_edited(block, body, path)
    foreign = [n for n in outside if isinstance(n, ast.ClassDef) and n.name in paste.classes]
    return block_edits(path, text, op.name, REGISTRY, body, block, foreign, set(registered), force, actions)


def plan_revert(
    package: Package, texts: Mapping[Path, str], names: Sequence[str] | None = None, force: bool = False
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None) and exactly their tagged branches."""
    sites = find_sites(package, texts)
    text, path = sites.text, package.models
    blocks = [b for b in sites.blocks.values() if names is None or b.name in names]
    edits: list[Edit] = []
    actions: list[str] = []
    for block in blocks:
        if not force:
            refuse_revert_edited(block, path)
        edits.append(Edit(block.start, block.end, ""))
        actions.append(f"{path.name}: removed {block.name} (yolopatch {block.version})")
        if block.forced:
            builtin = OPERATORS.get(block.name.lower())
            classes = template_paste(builtin.template).classes if builtin else (block.name,)
            edits += restore_classes(text, classes)
            actions.append(f"{path.name}: restored the class {block.name} that --force had disabled")
        for chain in (sites.create, sites.forward):
            for _, node in chain.branches:
                if _tagged(text, node, block.name):
                    previous = chain.before(node).body[-1]
                    start = line_end(text, previous.end_lineno or previous.lineno)
                    end = line_end(text, node.body[-1].end_lineno or node.body[-1].lineno)
                    edits.append(Edit(start, end, ""))
        if block.added:
            actions.append(f"{path.name}: removed its branches from create_modules and Darknet.forward")
    new = splice(text, edits)
    copies = copy_removals(
        package.root, sites.copies, sites.blocks.values(), blocks, force, actions, f"{package.root.name}/"
    )
    verify_compiles({path: new})
    return InjectPlan(f"pytorchyolo {package.kind}", (FileChange(path, text, new), *copies), tuple(actions))


def injected_names(package: Package) -> list[str]:
    return list(find_blocks(read_package(package)[package.models], package.models))


def inject(package: Package, operators: Sequence[Operator], force: bool = False) -> InjectPlan:
    return plan_inject(package, read_package(package), operators, force)


def revert(package: Package, names: Sequence[str] | None = None, force: bool = False) -> InjectPlan:
    """The revert plan, naming the checkpoints in view that pickle the classes it removes."""
    texts = read_package(package)
    plan = plan_revert(package, texts, names, force)
    removed = [n for n in find_blocks(texts[package.models], package.models) if names is None or n in names]
    if not plan.changed:
        return plan
    held = in_view([package.root.parent], MODULE, removed, Path.cwd())
    needed = tuple(name for name in removed if any(name in classes for classes in held.values()))
    if not held:
        return plan
    warning = (
        f"{len(held)} checkpoint(s) hold {', '.join(needed)} layers ({listing(list(held))}); a model saved whole "
        f"pickles the class by name, so they load only while {', '.join(needed)} is injected."
    )
    return replace(plan, warnings=(warning,), checkpoints=tuple(held), needed=needed)
