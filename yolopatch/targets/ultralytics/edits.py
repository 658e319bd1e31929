"""inject on an ultralytics package, planned: each operator's block in our module file
(nn/modules/yolopatch.py), its registration where ultralytics looks (nn/modules/__init__.py's import and
`__all__`, tasks.py's import and parse_model's collections), the users' modules copied beside it, and the
warnings that go with them (an upgrade that dropped the registration, checkpoints that stop loading, a
patched copy that is not the one Python imports). The exact inverse is revert.py's.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from yolopatch import __version__
from yolopatch.checkpoints import in_view, listing
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.inject import (
    InjectPlan,
    block_body,
    compose_block,
    find_blocks,
    names_insertion,
    names_of,
    names_removal,
    offset,
    refuse_edited,
    verify_compiles,
)
from yolopatch.operators.spec import Operator
from yolopatch.paste import operator_paste
from yolopatch.splice import Edit, newline_of, splice
from yolopatch.targets.backbones import backbone_registration
from yolopatch.targets.collections import (
    detect_collection,
    fusion_branch_edits,
    parse_model_of,
)
from yolopatch.targets.ultralytics.package import (
    MODULE,
    MODULE_FILE,
    Package,
    checkpoint_roots,
    location_warnings,
    read_package,
)
from yolopatch.targets.ultralytics.sites import Sites, find_sites, import_insertion
from yolopatch.targets.ultralytics.tables import IMPORTS
from yolopatch.userop.copies import copy_changes

if TYPE_CHECKING:
    from yolopatch.userop.source import TargetImport

# What a block's marker records it added, so that --revert removes exactly those: the import in
# nn/modules/__init__.py, the `__all__` entry, the name in tasks.py's import list, the collection entry
# ("tasks" and the __init__ pair are replaced by one explicit tasks.py import for a name ultralytics defines).
_REGISTRY = "registration"


def _identity_edits(sites: Sites, names: Sequence[str]) -> list[Edit]:
    """C3k2's --into classes into `m is C3k2`: it becomes `m in {C3k2, C3k2_SE}` (then grows)."""
    node = sites.identity
    if node is None or not names:
        return []
    if isinstance(node.ops[0], ast.In):
        return [names_insertion(sites.tasks, node.comparators[0].elts, names)]  # type: ignore[attr-defined]
    start = offset(sites.tasks, node.lineno, node.col_offset)
    end = offset(sites.tasks, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
    return [Edit(start, end, f"m in {{C3k2, {', '.join(names)}}}")]


def identity_removal(sites: Sites, names: Sequence[str]) -> list[Edit]:
    """The inverse: back to `m is C3k2` once only C3k2 is left."""
    node = sites.identity
    if node is None or not names or not isinstance(node.ops[0], ast.In):
        return []
    elts = node.comparators[0].elts  # type: ignore[attr-defined]
    if [n for n in names_of(elts) if n not in names] == ["C3k2"]:
        start = offset(sites.tasks, node.lineno, node.col_offset)
        end = offset(sites.tasks, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
        return [Edit(start, end, "m is C3k2")]
    return names_removal(sites.tasks, elts, names)


def _c3k2_variants(operators: Sequence[Operator]) -> list[str]:
    return [op.name for op in operators if op.generated is not None and "C3k2" in op.generated.requires]


def _quoted(text: str, elts: Sequence[ast.expr], name: str) -> str:
    """`name` as a string literal in the quotes the collection already uses."""
    segment = ast.get_source_segment(text, elts[-1]) if elts else None
    quote = segment[0] if segment and segment[0] in "'\"" else '"'
    return f"{quote}{name}{quote}"


def plan_inject(
    package: Package, texts: Mapping[Path, str | None], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    """Write each operator's block into our module file and register its name where it is missing."""
    sites = find_sites(package, texts, [op.name for op in operators])
    operators = [op for op in operators if not (op.backbone == "index" and "Index" in sites.defined)]
    names = [op.name for op in operators]
    _refuse_conflicts(sites, names, force)
    repeating = [op.name for op in operators if op.repeats]
    if repeating and sites.repeat is None:
        raise YolopatchError(
            f"{package.tasks}: parse_model has no repeat collection (the one with C2f that gets the row's n) "
            f"to register {', '.join(repeating)} in; nothing was changed."
        )
    fusion = [op.name for op in operators if op.fusion is not None]
    listed = [op.name for op in operators if op.backbone is not None]
    heads = [op.name for op in operators if op.head]
    missing = _missing(sites, names, repeating, _c3k2_variants(operators), [*fusion, *listed, *heads])
    init_edits, tasks_edits, actions = _registration_edits(sites, missing)
    tasks_edits += fusion_branch_edits(
        sites.tasks, sites.tasks_tree, package.tasks, "nn/tasks.py", fusion, actions
    )
    missing["torchvision"], edits = backbone_registration(
        sites.tasks, sites.tasks_tree, package.tasks, "nn/tasks.py", listed, actions
    )
    tasks_edits += edits
    missing["detect"], edits = _head_registration(sites, package.tasks, heads, actions)
    tasks_edits += edits
    module_edits: list[Edit] = []
    written: list[str] = []
    for op in operators:
        edits = _block_edit(sites, op, {site for site, listed in missing.items() if op.name in listed}, force)
        module_edits += edits
        written += [op.name] if edits else []
    if written:
        verb = "added" if sites.exists else "created, with"
        actions.insert(
            0, f"nn/modules/{MODULE_FILE}: {verb} class {', '.join(written)} (yolopatch {__version__})"
        )
    new = {
        package.init: splice(sites.init, init_edits),
        package.tasks: splice(sites.tasks, tasks_edits),
        package.module: splice(sites.module, module_edits),
    }
    folder = package.root / "nn" / "modules"
    copies = copy_changes(operators, folder, sites.copies, IMPORTS, _pointer, force, actions, "nn/modules/")
    verify_compiles({**new, **{c.path: c.new for c in copies}})
    return plan_of(sites, new, actions, _upgrade_warnings(sites), copies)


def _head_registration(
    sites: Sites, tasks: Path, heads: Sequence[str], actions: list[str]
) -> tuple[list[str], list[Edit]]:
    """Heads in parse_model's own Detect collection (never a branch of ours): the names added, the edit."""
    if not heads:
        return [], []
    collection = detect_collection(parse_model_of(sites.tasks_tree))
    if collection is None:
        raise YolopatchError(
            f"{tasks}: parse_model has no `m in {{Detect, ...}}` collection that passes the inputs' channels "
            f"(an unknown release?); {', '.join(heads)} cannot be registered with Detect. Nothing was changed."
        )
    missing = [n for n in heads if n not in names_of(collection.elts)]
    if missing:
        actions.append(f"nn/tasks.py: added {', '.join(missing)} to parse_model's own Detect collection")
    return missing, [names_insertion(sites.tasks, collection.elts, missing)] if missing else []


def _pointer(imported: TargetImport) -> str:
    """A user's import of ultralytics' code stays as it is: the copy sits inside the package."""
    return imported.module


def _missing(
    sites: Sites,
    names: Sequence[str],
    repeating: Sequence[str] = (),
    c3k2: Sequence[str] = (),
    fusion: Sequence[str] = (),
) -> dict[str, list[str]]:
    """Per registration site, the names it lacks (`repeating`: those parse_model must pass the row's n). A
    class ultralytics defines itself (its own CBAM) is imported into tasks.py from our module by its full
    path instead of being exported from nn.modules."""
    own = [n for n in names if n in sites.defined]
    plain = [n for n in names if n not in sites.defined]
    listed = [] if sites.star else names_of(sites.modules_import.names)
    return {
        "init": [n for n in plain if n not in sites.ours_in_init()],
        "all": []
        if sites.all_names is None
        else [n for n in plain if n not in names_of(sites.all_names.elts)],
        "tasks": [] if sites.star else [n for n in plain if n not in listed],
        "explicit": [n for n in own if n not in sites.ours_in_tasks()],
        "collection": [n for n in names if n not in fusion and n not in names_of(sites.collection.elts)],
        "repeat": [n for n in repeating if sites.repeat is None or n not in names_of(sites.repeat.elts)],
        "identity": [n for n in c3k2 if sites.identity is not None and n not in _identity_names(sites)],
    }


def _identity_names(sites: Sites) -> list[str]:
    node = sites.identity
    if node is None or not isinstance(node.ops[0], ast.In):
        return []
    return names_of(node.comparators[0].elts)  # type: ignore[attr-defined]


def _refuse_conflicts(sites: Sites, names: Sequence[str], force: bool) -> None:
    """A name tasks.py already binds (a hand-made registration of a pasted class) is not silently replaced."""
    bound = sites.bound_in_tasks()
    for name in names:
        block = sites.blocks.get(name)
        if name in bound and not (block and {"tasks", "explicit"} & set(block.added)) and not force:
            where = f" (class defined in nn/modules/{sites.defined[name]})" if name in sites.defined else ""
            raise YolopatchError(
                f"{sites.package.tasks}: already imports its own {name}{where}, registered by hand? "
                f"Remove that registration, or run again with --force to register yolopatch's {name} after it "
                "(--revert removes only yolopatch's)."
            )


def _registration_edits(
    sites: Sites, missing: Mapping[str, list[str]]
) -> tuple[list[Edit], list[Edit], list[str]]:
    init_edits: list[Edit] = []
    tasks_edits: list[Edit] = []
    actions: list[str] = []
    init_name, tasks_name = "nn/modules/__init__.py", "nn/tasks.py"
    if missing["init"]:
        init_edits.append(import_insertion(sites.init, sites.init_tree, ".yolopatch", missing["init"]))
        actions.append(f"{init_name}: imported {', '.join(missing['init'])} from .yolopatch")
    if missing["all"] and sites.all_names is not None:
        quoted = [_quoted(sites.init, sites.all_names.elts, n) for n in missing["all"]]
        init_edits.append(names_insertion(sites.init, sites.all_names.elts, quoted))
        actions.append(f"{init_name}: added {', '.join(missing['all'])} to __all__")
    if missing["tasks"]:
        tasks_edits.append(names_insertion(sites.tasks, sites.modules_import.names, missing["tasks"]))
        actions.append(
            f"{tasks_name}: added {', '.join(missing['tasks'])} to `from ultralytics.nn.modules import`"
        )
    if missing["explicit"]:
        tasks_edits.append(import_insertion(sites.tasks, sites.tasks_tree, MODULE, missing["explicit"]))
        actions.append(
            f"{tasks_name}: imported {', '.join(missing['explicit'])} from {MODULE} (ultralytics defines a class "
            "of that name itself, which stays as it is)"
        )
    if missing["collection"]:
        tasks_edits.append(names_insertion(sites.tasks, sites.collection.elts, missing["collection"]))
        actions.append(
            f"{tasks_name}: added {', '.join(missing['collection'])} to parse_model's (c1, c2) collection"
        )
    if missing["identity"]:
        tasks_edits += _identity_edits(sites, missing["identity"])
        actions.append(
            f"{tasks_name}: added {', '.join(missing['identity'])} to parse_model's C3k2 test (c3k at m/l/x, as C3k2)"
        )
    if missing["repeat"] and sites.repeat is not None:
        tasks_edits.append(names_insertion(sites.tasks, sites.repeat.elts, missing["repeat"]))
        actions.append(
            f"{tasks_name}: added {', '.join(missing['repeat'])} to parse_model's repeat collection (the row's n)"
        )
    return init_edits, tasks_edits, actions


def _block_edit(sites: Sites, op: Operator, added_now: set[str], force: bool) -> list[Edit]:
    """The operator's block appended to our module file, or an older one replaced; none when up to date."""
    paste = operator_paste(op)
    provided = _provided(sites, paste.requires)
    body = block_body(paste, set(), provided)
    block = sites.blocks.get(op.name)
    if not force:
        refuse_edited(block, body, sites.package.module)
    added = sorted(added_now | set(block.added if block else ()))
    wanted = compose_block(op.name, _REGISTRY, body, added, False, newline_of(sites.module))
    if block is None:
        return [Edit(len(sites.module), len(sites.module), wanted)]
    if sites.module[block.start : block.end] != wanted:
        return [Edit(block.start, block.end, wanted)]
    return []


def _provided(sites: Sites, names: frozenset[str]) -> list[str]:
    """Imports of what a block takes from ultralytics (Conv, C2f, Bottleneck), from the file defining each."""
    by_file: dict[str, list[str]] = {}
    for name in sorted(names):
        where = sites.defined.get(name, "conv.py:0").split(":")[0]
        by_file.setdefault(where.removesuffix(".py"), []).append(name)
    return [f"from .{module} import {', '.join(listed)}" for module, listed in sorted(by_file.items())]


def _lost(sites: Sites) -> list[str]:
    """Operators whose recorded registration is gone: pip replaced ultralytics' files and left ours."""
    missing = _missing(
        sites,
        list(sites.blocks),
        [n for n, b in sites.blocks.items() if "repeat" in b.added],
        [n for n, b in sites.blocks.items() if "identity" in b.added],
    )
    return sorted(
        name
        for name, block in sites.blocks.items()
        if any(name in missing.get(site, ()) for site in block.added)
    )


def _upgrade_warnings(sites: Sites) -> tuple[str, ...]:
    lost = _lost(sites)
    if not lost:
        return ()
    target = "--installed" if sites.package.installed else str(sites.package.root.parent)
    return (
        f"ultralytics was upgraded or reinstalled since yolopatch injected {', '.join(lost)}: "
        f"nn/modules/{MODULE_FILE} is still there, but the registration in nn/tasks.py and "
        "nn/modules/__init__.py is gone (pip replaced those files). Run "
        f"`yolopatch inject {target} --op {','.join(n.lower() for n in lost)}` again after every upgrade.",
    )


def plan_of(
    sites: Sites,
    new: Mapping[Path, str | None],
    actions: list[str],
    warnings: tuple[str, ...],
    copies: Sequence[FileChange] = (),
) -> InjectPlan:
    package = sites.package
    old = {
        package.init: sites.init,
        package.tasks: sites.tasks,
        package.module: sites.module if sites.exists else None,
    }
    changes = tuple(
        FileChange(path, old[path], new[path]) for path in (package.module, package.init, package.tasks)
    )
    return InjectPlan(sites.flavour(), (*changes, *copies), tuple(actions), warnings)


def injected_names(package: Package) -> list[str]:
    """The operators yolopatch has blocks for in this package's module file."""
    if not package.module.is_file():
        return []
    return list(find_blocks(read_text(package.module), package.module))


def inject(
    package: Package, operators: Sequence[Operator], force: bool = False, workdir: Path | None = None
) -> InjectPlan:
    """Read the package and plan the injection of `operators`; after an upgrade that dropped the
    registration, also name the checkpoints (under `workdir` and the checkout) that cannot load until then."""
    texts = read_package(package)
    plan = plan_inject(package, texts, operators, force)
    lost = _lost(find_sites(package, texts, [op.name for op in operators]))
    found = list(checkpoints_needing(package, workdir, lost)) if lost else []
    if not found:
        return plan
    warning = (
        f"{len(found)} checkpoint(s) hold {', '.join(lost)} layers ({listing(found)}) and will not load until "
        f"this inject is written: they pickle the classes as {MODULE}."
    )
    return replace(plan, warnings=(*plan.warnings, warning))


def checkpoints_needing(
    package: Package, workdir: Path | None, names: Sequence[str]
) -> dict[Path, list[str]]:
    """Checkpoints in view that pickle our `names` (the working folder's and a checkout's own folder)."""
    return in_view(checkpoint_roots(package), MODULE, names, workdir or Path.cwd())


def with_location_warnings(plan: InjectPlan, package: Package, python: str) -> InjectPlan:
    return replace(plan, warnings=(*plan.warnings, *location_warnings(package, python)))
