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
from dataclasses import dataclass
from pathlib import Path

from yolopatch.darknet.forms import native_types
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange
from yolopatch.inject import (
    Block,
    InjectPlan,
    bound_names,
    find_blocks,
    inside,
    parse_python,
    verify_compiles,
)
from yolopatch.operators.spec import Operator
from yolopatch.splice import Edit, splice
from yolopatch.targets.cfgcode.dispatch import (
    Chain,
    block_removal,
    branch_text,
    find_chain,
    operator_block,
    with_checkpoints,
)
from yolopatch.targets.pytorchyolo.package import MODULE, Package, read_package
from yolopatch.userop.copies import copy_changes, copy_removals
from yolopatch.userop.source import ImportKind, TargetImport

IMPORTS = ImportKind("pytorchyolo", ("pytorchyolo.",), "from pytorchyolo.models import Upsample")
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
    return find_chain(text, function, path, "module_def", names, "pytorchyolo", _by_hand())


def _create_body(kind: str) -> list[str]:
    if kind in _NATIVE_BUILD:
        module, filters = _NATIVE_BUILD[kind]
        return [f"filters = {filters}", f'modules.add_module(f"{kind}_{{module_i}}", {module})']
    return [f'filters = _yolopatch_{kind}(module_def, output_filters, modules, f"{kind}_{{module_i}}")']


def _forward_body(kind: str) -> list[str]:
    return [f"x = {_NATIVE_FORWARD.get(kind, 'module(x)')}"]


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
                branches[key].append(branch_text(text, chain, kind, op.name, body))
                added[key].append(kind)
                sites_of_op.append(key)
        if sites_of_op:
            where = "create_modules and Darknet.forward"
            actions.append(
                f"{path.name}: registered [{'], ['.join(native_types(op))}] in {where} ({op.name})"
            )
        registered = sorted(set(sites_of_op))
        edits += operator_block(text, path, sites.blocks, op, bound, outside, registered, force, actions)
    for key, chain in chains.items():
        edits += chain.insertion(text, branches[key])
    new = splice(text, edits)
    copies = copy_changes(
        operators, package.root, sites.copies, IMPORTS, _pointer, force, actions, f"{package.root.name}/"
    )
    verify_compiles({path: new, **{c.path: c.new for c in copies}})
    return InjectPlan(f"pytorchyolo {package.kind}", (FileChange(path, text, new), *copies), tuple(actions))


def _pointer(imported: TargetImport) -> str:
    return imported.module


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
        edits += block_removal(text, path, block, force, actions)
        for chain in (sites.create, sites.forward):
            edits += chain.removals(text, block.name)
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
    return with_checkpoints(plan, removed, [package.root.parent], MODULE)
