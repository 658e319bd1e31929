"""Planning inject and revert in a checkout: each operator's block in common.py, its name in yolo.py's
collections and explicit import, the users' modules copied into models/; and the checkpoints a revert
would stop loading."""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from yolopatch.checkpoints import in_view, listing
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange
from yolopatch.inject import (
    InjectPlan,
    block_body,
    block_edits,
    bound_names,
    find_blocks,
    inside,
    names_insertion,
    names_of,
    names_removal,
    parse_python,
    refuse_edited,
    refuse_revert_edited,
    restore_classes,
    verify_compiles,
)
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.paste import operator_paste, template_paste
from yolopatch.splice import Edit, splice
from yolopatch.targets.backbones import backbone_branch_edits, backbone_branch_removal
from yolopatch.targets.checkout.heads import (
    block_position,
    detect_site,
    head_body,
    registration,
    unregistration,
    yolo_defined,
)
from yolopatch.targets.checkout.layout import Checkout, read_checkout
from yolopatch.targets.checkout.sites import Sites, find_sites, manual_edit
from yolopatch.targets.collections import fusion_branch_edits, fusion_branch_removal, parse_model_of
from yolopatch.userop.copies import copy_changes, copy_removals

if TYPE_CHECKING:
    from yolopatch.userop.source import TargetImport

_REGISTRY = "yolo.py"  # where a block's recorded insertions are


def plan_inject(
    checkout: Checkout, texts: Mapping[Path, str], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    """Add each operator's block to common.py and its name to yolo.py, where they are missing (a head: its
    block and its name in yolo.py, yolopatch.targets.checkout.heads)."""
    sites = find_sites(checkout, texts, _wanted(operators))
    heads = [op for op in operators if op.head]
    operators = [op for op in operators if not op.head]
    common_edits: list[Edit] = []
    yolo_edits: list[Edit] = []
    actions: list[str] = []
    missing_in = {
        "import": []
        if sites.explicit is None
        else [n for n in _wanted(operators) if n not in names_of(sites.explicit.names)],  # type: ignore[arg-type]
        "collection": [
            op.name
            for op in operators
            if op.fusion is None and op.backbone is None and op.name not in names_of(sites.collection.elts)
        ],
        "repeat": _missing_repeats(sites, operators),
    }
    if missing_in["import"]:
        yolo_edits.append(names_insertion(sites.yolo, sites.explicit.names, missing_in["import"]))  # type: ignore[union-attr]
        actions.append(
            f"{checkout.yolo.name}: added {', '.join(missing_in['import'])} to `from ...models.common import ...`"
        )
    if missing_in["collection"]:
        yolo_edits.append(names_insertion(sites.yolo, sites.collection.elts, missing_in["collection"]))
        actions.append(
            f"{checkout.yolo.name}: added {', '.join(missing_in['collection'])} to parse_model's (c1, c2) {sites.kind()}"
        )
    if missing_in["repeat"] and sites.repeat is not None:
        yolo_edits.append(names_insertion(sites.yolo, sites.repeat.elts, missing_in["repeat"]))
        actions.append(
            f"{checkout.yolo.name}: added {', '.join(missing_in['repeat'])} to parse_model's repeat collection "
            "(parse_model passes them the row's n)"
        )
    fusion = [op.name for op in operators if op.fusion is not None]
    tree = parse_python(sites.yolo, checkout.yolo)
    yolo_edits += fusion_branch_edits(sites.yolo, tree, checkout.yolo, checkout.yolo.name, fusion, actions)
    listed = [op.name for op in operators if op.backbone is not None]
    yolo_edits += backbone_branch_edits(sites.yolo, tree, checkout.yolo, checkout.yolo.name, listed, actions)
    yolo_edits += _head_edits(sites, tree, heads, force, actions)
    outside = [n for n in sites.common_tree.body if not inside(sites.common, sites.blocks.values(), n)]
    bound = bound_names(outside)
    for op in operators:
        common_edits += _plan_block(sites, op, bound, outside, missing_in, force, actions)
    new = {checkout.common: splice(sites.common, common_edits), checkout.yolo: splice(sites.yolo, yolo_edits)}
    copies = copy_changes(
        operators,
        sites.checkout.models,
        sites.copies,
        sites.checkout.layout.imports,
        _pointer(sites),
        force,
        actions,
    )
    verify_compiles({**new, **{c.path: c.new for c in copies}})
    return _plan(sites, new, actions, copies)


def _head_edits(
    sites: Sites, tree: ast.Module, heads: Sequence[Operator], force: bool, actions: list[str]
) -> list[Edit]:
    """Each head's block before parse_model in yolo.py, and its name in parse_model's own Detect test."""
    if not heads:
        return []
    checkout, text = sites.checkout, sites.yolo
    base = checkout.layout.head
    names = ", ".join(op.name for op in heads)
    if not base:
        raise YolopatchError(
            f"{names}: yolopatch registers your own heads in YOLOv5 checkouts (and ultralytics), not yet in "
            f"{checkout.layout.family}'s; nothing was changed."
        )
    site = detect_site(parse_model_of(tree), base)
    if site is None:
        raise YolopatchError(
            f"{checkout.yolo}: parse_model has no `m is {base}` or `m in {{{base}, ...}}` branch that passes the "
            f"head its inputs' channels (an unknown release?); {names} cannot be registered with {base}. "
            "Nothing was changed."
        )
    edits = registration(text, site, base, [op.name for op in heads])
    if edits:
        actions.append(
            f"{checkout.yolo.name}: added {names} to parse_model's own {base} test "
            f"(`{ast.unparse(site.test)}`), so every isinstance(m, {base}) applies"
        )
    ours = [(b.start, b.end) for b in sites.heads.values()]
    at = block_position(text, tree, checkout.yolo)
    for op in heads:
        assert op.user is not None
        own = {op.name, op.user.cls}
        body = head_body(
            op, checkout.layout.imports, _pointer(sites), yolo_defined(tree, ours, text) - own, checkout.yolo
        )
        block = sites.heads.get(op.name)
        if not force:
            refuse_edited(block, body, checkout.yolo)
        outside = [n for n in tree.body if not inside(text, sites.heads.values(), n)]
        foreign = [n for n in outside if isinstance(n, ast.ClassDef) and n.name == op.name]
        added = set() if op.name in site.names() else {"detect"}
        edits += block_edits(
            checkout.yolo, text, op.name, _REGISTRY, body, block, foreign, added, force, actions, at
        )
    return edits


def _head_removal(sites: Sites, names: Sequence[str] | None, force: bool, actions: list[str]) -> list[Edit]:
    """The inverse of _head_edits for the named heads (all when None)."""
    checkout, text = sites.checkout, sites.yolo
    blocks = [b for b in sites.heads.values() if names is None or b.name in names]
    edits: list[Edit] = []
    for block in blocks:
        if not force:
            refuse_revert_edited(block, checkout.yolo)
        edits.append(Edit(block.start, block.end, ""))
        actions.append(f"{checkout.yolo.name}: removed class {block.name} (yolopatch {block.version})")
        if block.forced:
            edits += restore_classes(text, (block.name,))
            actions.append(f"{checkout.yolo.name}: restored the class {block.name} that --force had disabled")
    registered = [b.name for b in blocks if "detect" in b.added]
    site = detect_site(parse_model_of(parse_python(text, checkout.yolo)), checkout.layout.head)
    if registered and site is not None:
        edits += unregistration(text, site, checkout.layout.head, registered)
        actions.append(
            f"{checkout.yolo.name}: removed {', '.join(registered)} from parse_model's own {checkout.layout.head} test"
        )
    return edits


def _missing_repeats(sites: Sites, operators: Sequence[Operator]) -> list[str]:
    repeating = [op.name for op in operators if op.repeats]
    if repeating and sites.repeat is None:
        raise YolopatchError(
            f"{sites.checkout.yolo}: parse_model has no repeat collection (`if m in {{BottleneckCSP, C3, ...}}: "
            f"args.insert(2, n)`) to register {', '.join(repeating)} in; nothing was changed."
        )
    listed = names_of(sites.repeat.elts) if sites.repeat is not None else []
    return [name for name in repeating if name not in listed]


def _pointer(sites: Sites) -> Callable[[TargetImport], str]:
    """Where a user's import of this layout's code points in this checkout: `models.common` in a checkout,
    `PACKAGE.models.common` in the pip package."""
    package = sites.checkout.models.parent.name
    layout = sites.checkout.layout

    def point(imported: TargetImport) -> str:
        bare = imported.module.removeprefix(f"{layout.package}.")
        return f"{package}.{bare}" if sites.absolute else bare

    return point


def _wanted(operators: Sequence[Operator]) -> list[str]:
    return [op.name for op in operators]


def _plan_block(
    sites: Sites,
    op: Operator,
    bound: set[str],
    outside: list[ast.stmt],
    missing_in: Mapping[str, list[str]],
    force: bool,
    actions: list[str],
) -> list[Edit]:
    checkout, text = sites.checkout, sites.common
    paste = operator_paste(op)
    absent = sorted(paste.requires - bound)
    if absent:
        raise YolopatchError(
            f"{checkout.common}: defines no {', '.join(absent)}, which {op.name} builds on; is this "
            f"{checkout.layout.family}? {manual_edit([op.name])}"
        )
    block = sites.blocks.get(op.name)
    body = block_body(paste, bound)
    if not force:
        refuse_edited(block, body, checkout.common)
    foreign = [n for n in outside if isinstance(n, ast.ClassDef) and n.name in paste.classes]
    added = {site for site, names in missing_in.items() if op.name in names}
    return block_edits(checkout.common, text, op.name, _REGISTRY, body, block, foreign, added, force, actions)


def plan_revert(
    checkout: Checkout, texts: Mapping[Path, str], names: Sequence[str] | None = None, force: bool = False
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None) and exactly the names yolopatch added."""
    sites = find_sites(checkout, texts, names or injected_names(checkout, texts))
    blocks = [b for b in sites.blocks.values() if names is None or b.name in names]
    common_edits: list[Edit] = []
    yolo_edits: list[Edit] = []
    actions: list[str] = []
    for block in blocks:
        if not force:
            refuse_revert_edited(block, checkout.common)
        common_edits.append(Edit(block.start, block.end, ""))
        actions.append(f"{checkout.common.name}: removed class {block.name} (yolopatch {block.version})")
        if block.forced:
            builtin = OPERATORS.get(block.name.lower())
            classes = template_paste(builtin.template).classes if builtin else (block.name,)
            common_edits += restore_classes(sites.common, classes)
            actions.append(
                f"{checkout.common.name}: restored the class {block.name} that --force had disabled"
            )
        if "collection" in block.added and block.name in names_of(sites.collection.elts):
            yolo_edits += names_removal(sites.yolo, sites.collection.elts, [block.name])
            actions.append(f"{checkout.yolo.name}: removed {block.name} from parse_model's collection")
        if "import" in block.added and sites.explicit and block.name in names_of(sites.explicit.names):  # type: ignore[arg-type]
            yolo_edits += names_removal(sites.yolo, sites.explicit.names, [block.name])
            actions.append(f"{checkout.yolo.name}: removed {block.name} from the explicit import")
        if "repeat" in block.added and sites.repeat is not None and block.name in names_of(sites.repeat.elts):
            yolo_edits += names_removal(sites.yolo, sites.repeat.elts, [block.name])
            actions.append(f"{checkout.yolo.name}: removed {block.name} from parse_model's repeat collection")
    yolo_edits += _head_removal(sites, names, force, actions)
    left = [b for b in sites.blocks.values() if b not in blocks]
    yolo_edits += fusion_branch_removal(sites.yolo, checkout.yolo.name, left, actions)
    yolo_edits += backbone_branch_removal(sites.yolo, checkout.yolo.name, left, actions)
    new = {checkout.common: splice(sites.common, common_edits), checkout.yolo: splice(sites.yolo, yolo_edits)}
    copies = copy_removals(sites.checkout.models, sites.copies, sites.blocks.values(), blocks, force, actions)
    verify_compiles(new)
    return _plan(sites, new, actions, copies)


def injected_names(checkout: Checkout, texts: Mapping[Path, str]) -> list[str]:
    """The operators yolopatch has blocks for in this checkout (heads' in yolo.py)."""
    return [
        *find_blocks(texts[checkout.common], checkout.common),
        *find_blocks(texts[checkout.yolo], checkout.yolo),
    ]


def inject(checkout: Checkout, operators: Sequence[Operator], force: bool = False) -> InjectPlan:
    """Read the checkout and plan the injection of `operators`."""
    return plan_inject(checkout, read_checkout(checkout), operators, force)


def revert(checkout: Checkout, names: Sequence[str] | None = None, force: bool = False) -> InjectPlan:
    """Read the checkout and plan the revert, naming the checkpoints in view (the checkout's and the working
    folder's) that pickle the classes it removes: they stop loading."""
    texts = read_checkout(checkout)
    plan = plan_revert(checkout, texts, names, force)
    removed = [name for name in injected_names(checkout, texts) if names is None or name in names]
    if not plan.changed:
        return plan
    held = in_view([checkout.models.parent], None, removed, Path.cwd())
    needed = tuple(name for name in removed if any(name in classes for classes in held.values()))
    warnings = checkpoint_warnings(checkout, needed, list(held))
    return replace(plan, warnings=warnings, checkpoints=tuple(held), needed=needed)


def _plan(
    sites: Sites, new: Mapping[Path, str], actions: list[str], copies: Sequence[FileChange] = ()
) -> InjectPlan:
    changes = tuple(
        FileChange(path, old, new[path])
        for path, old in ((sites.checkout.common, sites.common), (sites.checkout.yolo, sites.yolo))
    )
    return InjectPlan(sites.flavour(), (*changes, *copies), tuple(actions))


def checkpoint_warnings(checkout: Checkout, names: Sequence[str], found: Sequence[Path]) -> tuple[str, ...]:
    """Why checkpoints that pickle the classes stop loading without them."""
    if not found:
        return ()
    listed = ", ".join(names)
    return (
        f"{len(found)} checkpoint(s) hold {listed} layers ({listing(found)}); {checkout.layout.family} pickles "
        f"the class by name, so they load only while {listed} is injected.",
    )
