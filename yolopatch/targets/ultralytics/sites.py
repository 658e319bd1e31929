"""The places in an ultralytics package that inject edits, found with `ast`: parse_model's (c1, c2) and
repeat collections in nn/tasks.py (found as for every family, yolopatch.targets.collections) and its C3k2
test, its import of nn.modules, nn/modules/__init__.py's `__all__`, our own imports, the blocks in our
module file and the classes ultralytics defines itself.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.inject import (
    Block,
    bound_names,
    find_blocks,
    names_insertion,
    names_of,
    names_removal,
    parse_python,
    statement_insertion,
    statement_removal,
)
from yolopatch.splice import Edit
from yolopatch.targets.collections import (
    Collection,
    parse_model_of,
    repeat_collection,
    required_channel_collection,
)
from yolopatch.targets.ultralytics.package import HEADER, MODULE, MODULE_FILE, Package, package_version


def manual_edit(names: Sequence[str]) -> str:
    """The steps by hand, for an error that finds a package in no shape inject knows."""
    listed = ", ".join(names)
    return (
        f"By hand: 1) put the class(es) ({listed}) into a new file ultralytics/nn/modules/{MODULE_FILE}; "
        f"2) import them in nn/modules/__init__.py and add them to its __all__; 3) in nn/tasks.py, add them to "
        "`from ultralytics.nn.modules import (...)` and to parse_model's (c1, c2) collection (the one with Conv)."
    )


@dataclass(frozen=True)
class Sites:
    """A package's files as read, with the places inject edits (found with ast)."""

    package: Package
    init: str
    tasks: str
    module: str  # HEADER when the file does not exist yet
    exists: bool
    init_tree: ast.Module
    tasks_tree: ast.Module
    collection: Collection
    collection_kind: str
    repeat: Collection | None  # parse_model's repeat collection (C2f's: n inserted)
    identity: ast.Compare | None  # `m is C3k2` (c3k at m/l/x, legacy heads off), or our `m in {C3k2, ...}`
    copies: Mapping[Path, str]  # the users' modules copied into nn/modules/
    modules_import: ast.ImportFrom  # tasks.py's `from ultralytics.nn.modules import ...`
    all_names: ast.Tuple | ast.List | None
    blocks: dict[str, Block]
    defined: Mapping[str, str]  # classes ultralytics itself defines in nn/modules: name -> "file:line"
    version: str

    @property
    def star(self) -> bool:
        return any(alias.name == "*" for alias in self.modules_import.names)

    def ours_in_init(self) -> dict[str, ast.ImportFrom]:
        return _our_imports(self.init_tree, ".yolopatch")

    def ours_in_tasks(self) -> dict[str, ast.ImportFrom]:
        return _our_imports(self.tasks_tree, MODULE)

    def bound_in_tasks(self) -> set[str]:
        ours = set(map(id, self.ours_in_tasks().values()))
        return bound_names(n for n in self.tasks_tree.body if id(n) not in ours)

    def flavour(self) -> str:
        version = self.version
        where = self.package.kind
        imports = "a star import" if self.star else "an explicit parenthesised import"
        all_kind = (
            "absent"
            if self.all_names is None
            else "a tuple"
            if isinstance(self.all_names, ast.Tuple)
            else "a list"
        )
        return (
            f"ultralytics {version or '(version unknown)'} ({where}): operators are registered in parse_model "
            f"(nn/tasks.py:{self.collection.lineno}); tasks.py imports nn.modules with {imports}; parse_model's "
            f"(c1, c2) collection is {self.collection_kind}; __all__ is {all_kind}"
        )


def _our_imports(tree: ast.Module, module: str) -> dict[str, ast.ImportFrom]:
    """Our one-name import statements (`from .yolopatch import SE`), by name."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and ("." * node.level + (node.module or "")) == module:
            found.update({alias.name: node for alias in node.names})
    return found


def find_sites(package: Package, texts: Mapping[Path, str | None], names: Sequence[str]) -> Sites:
    """The places inject edits; `names`: the operators asked for, for the manual steps of an error."""
    init, tasks = texts[package.init] or "", texts[package.tasks] or ""
    module = texts.get(package.module)
    init_tree, tasks_tree = parse_python(init, package.init), parse_python(tasks, package.tasks)
    parse_model = parse_model_of(tasks_tree)
    collection, kind = required_channel_collection(
        parse_model, package.tasks, "ultralytics", "release", manual_edit(names)
    )
    return Sites(
        package=package,
        init=init,
        tasks=tasks,
        module=HEADER if module is None else module,
        exists=module is not None,
        init_tree=init_tree,
        tasks_tree=tasks_tree,
        collection=collection,
        collection_kind=kind,
        repeat=repeat_collection(parse_model),
        identity=_c3k2_test(tasks_tree),
        copies={path: text for path, text in texts.items() if path.name.startswith("yolopatch_") and text},
        modules_import=_modules_import(tasks_tree, package, names),
        all_names=_all_names(init_tree),
        blocks={} if module is None else find_blocks(module, package.module),
        defined=_defined_classes(package, texts),
        version=package_version(texts.get(package.version_file) or ""),
    )


def _defined_classes(package: Package, texts: Mapping[Path, str | None]) -> dict[str, str]:
    defined: dict[str, str] = {}
    for path in package.siblings:
        text = texts.get(path)
        if text is None:
            continue
        for node in parse_python(text, path).body:
            if isinstance(node, ast.ClassDef):
                defined.setdefault(node.name, f"{path.name}:{node.lineno}")
    return defined


def _c3k2_test(tree: ast.Module) -> ast.Compare | None:
    """parse_model's `m is C3k2` (8.3 on: c3k set at m/l/x, the heads' legacy flag off), or the set inject
    made of it so that C3k2's --into classes get the same."""
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Compare) and isinstance(node.left, ast.Name) and node.left.id == "m"):
            continue
        tested = node.comparators[0]
        if isinstance(node.ops[0], ast.Is) and isinstance(tested, ast.Name) and tested.id == "C3k2":
            return node
        if isinstance(node.ops[0], ast.In) and isinstance(tested, ast.Set):
            listed = names_of(tested.elts)
            if listed[:1] == ["C3k2"] and not {"Conv", "C2f"} & set(listed):
                return node
    return None


def _modules_import(tree: ast.Module, package: Package, names: Sequence[str]) -> ast.ImportFrom:
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "ultralytics.nn.modules":
            return node
    raise YolopatchError(
        f"{package.tasks}: does not import `from ultralytics.nn.modules import ...` at the top level; "
        f"nothing was changed. {manual_edit(names)}"
    )


def _all_names(tree: ast.Module) -> ast.Tuple | ast.List | None:
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
            and isinstance(node.value, (ast.Tuple, ast.List))
        ):
            return node.value
    return None


def _our_import(tree: ast.Module, module: str) -> ast.ImportFrom | None:
    """Our import statement (`from .yolopatch import SE, ECA`), if the file has one."""
    return next(iter(_our_imports(tree, module).values()), None)


def import_insertion(text: str, tree: ast.Module, module: str, names: Sequence[str]) -> Edit:
    """Names into our import statement; the statement itself, on a line after the file's last top-level
    import (tasks.py: after its import of ultralytics.nn.modules), when it is not there yet."""
    ours = _our_import(tree, module)
    if ours is not None:
        return names_insertion(text, ours.names, names)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    anchor = next((n for n in imports if getattr(n, "module", None) == "ultralytics.nn.modules"), imports[-1])
    return statement_insertion(text, anchor, f"from {module} import {', '.join(names)}")


def import_removal(text: str, tree: ast.Module, module: str, names: set[str]) -> list[Edit]:
    """The inverse: the names, or the whole statement once none of its names stays."""
    ours = _our_import(tree, module)
    if ours is None:
        return []
    listed = names_of(ours.names)
    if set(listed) <= names:
        return [statement_removal(text, tree.body, ours)]
    return names_removal(text, ours.names, names)
