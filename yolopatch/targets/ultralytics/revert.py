"""Planning a revert in an ultralytics package: the blocks of the named operators out of our module file
(the file itself once no block is left), exactly the registration yolopatch added, the fusion and
backbone branches with their last class, and the checkpoints in view that would stop loading."""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from yolopatch.checkpoints import listing
from yolopatch.inject import InjectPlan, find_blocks, names_removal, refuse_revert_edited, verify_compiles
from yolopatch.splice import Edit, splice
from yolopatch.targets.backbones import backbone_branch_removal, native_removal
from yolopatch.targets.collections import detect_collection, fusion_branch_removal, parse_model_of
from yolopatch.targets.ultralytics.edits import checkpoints_needing, identity_removal, injected_names, plan_of
from yolopatch.targets.ultralytics.package import MODULE, MODULE_FILE, Package, read_package
from yolopatch.targets.ultralytics.sites import Sites, find_sites, import_removal
from yolopatch.userop.copies import copy_removals


def plan_revert(
    package: Package,
    texts: Mapping[Path, str | None],
    names: Sequence[str] | None = None,
    force: bool = False,
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None), exactly the registration yolopatch added,
    and our module file once no block is left in it."""
    sites = find_sites(
        package, texts, names or list(find_blocks(texts.get(package.module) or "", package.module))
    )
    blocks = [b for b in sites.blocks.values() if names is None or b.name in names]
    module_edits, actions = [], []
    for block in blocks:
        if not force:
            refuse_revert_edited(block, package.module)
        module_edits.append(Edit(block.start, block.end, ""))
        actions.append(f"nn/modules/{MODULE_FILE}: removed class {block.name} (yolopatch {block.version})")
    module = splice(sites.module, module_edits)
    emptied = not find_blocks(module, package.module) and _only_header(module)
    # once the file goes, nothing may import from it any more, whatever the blocks recorded
    leaving = {b.name: set(b.added) for b in blocks}
    if emptied:
        for name in {*sites.ours_in_init(), *sites.ours_in_tasks()} - set(leaving):
            leaving[name] = {"init", "explicit"}
    init_edits, tasks_edits = _unregistration_edits(sites, leaving, actions)
    left = [b for b in sites.blocks.values() if b not in blocks]
    tasks_edits += fusion_branch_removal(sites.tasks, "nn/tasks.py", left, actions)
    tasks_edits += backbone_branch_removal(sites.tasks, "nn/tasks.py", left, actions)
    new: dict[Path, str | None] = {
        package.init: splice(sites.init, init_edits),
        package.tasks: splice(sites.tasks, tasks_edits),
        package.module: None if emptied else module,
    }
    if emptied and sites.exists:
        actions.append(f"nn/modules/{MODULE_FILE}: deleted (no operator left in it)")
    verify_compiles(new)
    return plan_of(
        sites,
        new,
        actions,
        (),
        copy_removals(
            package.root / "nn" / "modules",
            sites.copies,
            sites.blocks.values(),
            blocks,
            force,
            actions,
            "nn/modules/",
        ),
    )


def _unregistration_edits(
    sites: Sites, leaving: Mapping[str, set[str]], actions: list[str]
) -> tuple[list[Edit], list[Edit]]:
    init_edits = import_removal(sites.init, sites.init_tree, ".yolopatch", set(leaving))
    tasks_edits = import_removal(sites.tasks, sites.tasks_tree, MODULE, set(leaving))

    def recorded(site: str) -> list[str]:
        return [name for name, added in leaving.items() if site in added]

    if sites.all_names is not None:
        init_edits += names_removal(sites.init, sites.all_names.elts, recorded("all"))
    if not sites.star:
        tasks_edits += names_removal(sites.tasks, sites.modules_import.names, recorded("tasks"))
    tasks_edits += names_removal(sites.tasks, sites.collection.elts, recorded("collection"))
    tasks_edits += native_removal(sites.tasks, sites.tasks_tree, recorded("torchvision"))
    detect = detect_collection(parse_model_of(sites.tasks_tree))
    if detect is not None:
        tasks_edits += names_removal(sites.tasks, detect.elts, recorded("detect"))
    if sites.repeat is not None:
        tasks_edits += names_removal(sites.tasks, sites.repeat.elts, recorded("repeat"))
    tasks_edits += identity_removal(sites, recorded("identity"))
    if leaving:
        actions.append(f"nn/tasks.py, nn/modules/__init__.py: unregistered {', '.join(sorted(leaving))}")
    return init_edits, tasks_edits


def _only_header(text: str) -> bool:
    """Nothing but a docstring left (ours, or an older yolopatch's)."""
    try:
        body = ast.parse(text.lstrip("\ufeff")).body
    except SyntaxError:
        return False
    return (
        "yolopatch" in text
        and all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)
        and "#" not in text
    )


def revert(
    package: Package, names: Sequence[str] | None = None, force: bool = False, workdir: Path | None = None
) -> InjectPlan:
    """Read the package and plan the revert, naming the checkpoints (under `workdir`, its runs/ and the
    checkout) that pickle the classes it removes: they stop loading."""
    texts = read_package(package)
    plan = plan_revert(package, texts, names, force)
    removed = list(names) if names is not None else injected_names(package)
    held = checkpoints_needing(package, workdir, removed) if plan.changed else {}
    if not held:
        return plan
    needed = tuple(name for name in removed if any(name in classes for classes in held.values()))
    listed = ", ".join(needed)
    warning = (
        f"{len(held)} checkpoint(s) hold {listed} layers ({listing(list(held))}); ultralytics pickles them as "
        f"{MODULE}.{needed[0]}, so they load only where {listed} is injected (ultralytics' own error instead "
        "asks for a new training run)."
    )
    return replace(plan, warnings=(warning,), checkpoints=tuple(held), needed=needed)
