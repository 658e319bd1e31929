"""The checkout layout YOLOv5 made and WongKinYiu's YOLOv7 and YOLOv9 kept: models/common.py holds the
blocks, models/yolo.py holds parse_model, which `eval`s module names in yolo.py's globals (a star import of
common). Shared by the targets of those families; each gives its `Layout` and its tables.

inject edits two files: common.py gets the operator blocks; yolo.py gets the names in parse_model's
(c1, c2) collection, its "insert n" collection for blocks that take the row's n, and an explicit
`from models.common import ...` when yolo.py has one. The pip packages of these families (`yolov5`,
`yolo9`, `yolov7detect`) have the same files under PACKAGE/models/ with absolute imports.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import __version__, child
from yolopatch.build.check import check_builtin, check_with_users, export_builtin
from yolopatch.checkpoints import checkpoints_needing, listing
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.inject import (
    Block,
    InjectPlan,
    block_body,
    bound_names,
    compose_block,
    disable_classes,
    find_blocks,
    inside,
    names_insertion,
    names_of,
    names_removal,
    one_per_line,
    parse_python,
    refuse_edited,
    refuse_revert_edited,
    restore_classes,
    verify_compiles,
)
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.paste import operator_paste, template_paste
from yolopatch.splice import Edit, newline_of, splice
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.collections import channel_collection, parse_model_of, repeat_collection
from yolopatch.userop.copies import copy_changes, copy_removals
from yolopatch.userop.record import find_config
from yolopatch.userop.source import CHECKOUT_LAYOUT

if TYPE_CHECKING:
    from yolopatch.report import ModelReport
    from yolopatch.userop.source import TargetImport

# The model_info line, e.g. "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs";
# YOLOv5 master writes the counts with thousands separators ("6,320,733 parameters"), YOLOv5 v4.0 to v6.0 and
# YOLOv7 "Model Summary: ... 17.0 GFLOPS", YOLOv9 "yolov9-c summary: ...".
_COUNT = r"\d{1,3}(?:,\d{3})+|\d+"
_SUMMARY = re.compile(
    rf"(?:\S+ summary|Model Summary): (?:{_COUNT}) layers, (?:{_COUNT}) parameters, (?:{_COUNT}) gradients"
    r"(?:, [\d.]+ GFLOP[sS])?"
)
_CHILD = "yolopatch.targets.checkout_build"
_REGISTRY = "yolo.py"  # where a block's recorded insertions are


@dataclass(frozen=True)
class Layout:
    """What tells the families of this layout apart: the name users know, the import name of its pip
    package (whose yolo.py imports `PACKAGE.models.common`), and classes that only its yolo.py or common.py
    defines (none: any checkout of this layout that no other family claims)."""

    family: str
    package: str
    marks: frozenset[str] = frozenset()

    def owns(self, models: Path) -> bool:
        if not self.marks:
            return True
        texts = (read_text(models / name) for name in ("yolo.py", "common.py"))
        return any(f"class {mark}(" in text for text in texts for mark in self.marks)


@dataclass(frozen=True)
class Checkout:
    models: Path
    common: Path
    yolo: Path
    layout: Layout

    @property
    def label(self) -> str:
        return str(self.models.parent)

    @property
    def import_paths(self) -> tuple[Path, ...]:
        """The root, for `models.common`; in a pip package's layout also the folder holding the package, for
        the absolute imports inside it (`yolo9.utils`)."""
        tree = ast.parse(read_text(self.yolo))
        absolute = imports_as_package(tree, self.models)
        return (self.models.parent, self.models.parent.parent) if absolute else (self.models.parent,)


def models_folder(repo: Path, package: str) -> Path | None:
    """The models/ folder at `repo`: a checkout's root, its models/ folder, or an unpacked package."""
    for models in (repo / "models", repo, repo / package / "models"):
        if (models / "yolo.py").is_file() and (models / "common.py").is_file():
            return models
    return None


def locate_checkout(repo: Path, layout: Layout) -> Checkout | None:
    """The checkout at `repo` when it is this layout's family (None: not a checkout, or another family's)."""
    models = models_folder(repo, layout.package)
    if models is None or not layout.owns(models):
        return None
    return Checkout(models, models / "common.py", models / "yolo.py", layout)


def find_checkout(repo: Path, layout: Layout) -> Checkout:
    """As locate_checkout, with the reason when there is none."""
    found = locate_checkout(repo, layout)
    if found is not None:
        return found
    if not repo.exists():
        raise YolopatchError(f"{repo}: no such folder.")
    raise YolopatchError(
        f"{repo}: not a {layout.family} checkout: found no models/yolo.py and models/common.py of "
        f"{layout.family}. Pass the checkout's root folder (or its models/ folder)."
    )


def enclosing_checkout(path: Path, layout: Layout) -> Path | None:
    """The checkout of this layout a file sits in (relative to the working folder when it is below it)."""
    for folder in path.resolve().parents:
        if locate_checkout(folder, layout) is not None and (folder / "models").is_dir():
            try:
                return folder.relative_to(Path.cwd())
            except ValueError:
                return folder
    return None


def imports_as_package(tree: ast.Module, models: Path) -> bool:
    """Whether yolo.py imports its siblings absolutely (`from yolov5.models.common import *`: the pip
    package layout) rather than as `models.common` from the checkout's root."""
    package = models.parent.name
    return any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith(f"{package}.models") for n in tree.body
    )


def read_checkout(checkout: Checkout) -> dict[Path, str]:
    """common.py, yolo.py and the users' modules inject copied into models/ (yolopatch_*.py)."""
    copies = {path: read_text(path) for path in sorted(checkout.models.glob("yolopatch_*.py"))}
    return {checkout.common: read_text(checkout.common), checkout.yolo: read_text(checkout.yolo), **copies}


def manual_edit(names: Sequence[str]) -> str:
    listed = ", ".join(names)
    return (
        f"By hand: 1) append the class(es) from `yolopatch ops` templates to models/common.py; "
        f"2) in models/yolo.py parse_model, add {listed} to the `if m in {{Conv, GhostConv, ...}}:` collection; "
        f"3) if yolo.py imports names from models.common explicitly, add {listed} there too."
    )


@dataclass(frozen=True)
class _Sites:
    """A checkout's two files as read, with the places inject edits."""

    checkout: Checkout
    common: str
    yolo: str
    common_tree: ast.Module
    collection: ast.List | ast.Tuple | ast.Set
    repeat: ast.List | ast.Tuple | ast.Set | None  # parse_model's "insert n" collection (C3's)
    explicit: ast.ImportFrom | None
    blocks: dict[str, Block]
    absolute: bool
    copies: Mapping[Path, str]  # users' modules copied into models/

    def flavour(self) -> str:
        layout = (
            f"{self.checkout.layout.package} pip package layout (absolute imports)"
            if self.absolute
            else "checkout layout (models.common)"
        )
        if self.explicit is None:
            imports = "a star import"
        elif self.explicit.lineno == self.explicit.end_lineno:
            imports = "an explicit one-line import"
        else:
            imports = "an explicit parenthesised import"
        return f"{layout}; yolo.py imports common with {imports}; parse_model's collection is {self.kind()}"

    def kind(self) -> str:
        kind = {ast.List: "list", ast.Tuple: "tuple", ast.Set: "set"}[type(self.collection)]
        return kind + (" (one name per line)" if one_per_line(self.collection.elts) else "")


def _sites(checkout: Checkout, texts: Mapping[Path, str], names: Sequence[str]) -> _Sites:
    """The places inject edits; `names`: the operators asked for, for the manual steps of an error."""
    common, yolo = texts[checkout.common], texts[checkout.yolo]
    common_tree, yolo_tree = parse_python(common, checkout.common), parse_python(yolo, checkout.yolo)
    return _Sites(
        checkout,
        common,
        yolo,
        common_tree,
        _collection(yolo_tree, checkout, names),
        repeat_collection(parse_model_of(yolo_tree)),
        _explicit_import(yolo_tree, checkout, names),
        find_blocks(common, checkout.common),
        imports_as_package(yolo_tree, checkout.models),
        {path: text for path, text in texts.items() if path.name.startswith("yolopatch_")},
    )


def plan_inject(
    checkout: Checkout, texts: Mapping[Path, str], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    """Add each operator's block to common.py and its name to yolo.py, where they are missing."""
    sites = _sites(checkout, texts, _wanted(operators))
    common_edits: list[Edit] = []
    yolo_edits: list[Edit] = []
    actions: list[str] = []
    missing_in = {
        "import": []
        if sites.explicit is None
        else [n for n in _wanted(operators) if n not in names_of(sites.explicit.names)],  # type: ignore[arg-type]
        "collection": [n for n in _wanted(operators) if n not in names_of(sites.collection.elts)],
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
    outside = [n for n in sites.common_tree.body if not inside(sites.common, sites.blocks.values(), n)]
    bound = bound_names(outside)
    for op in operators:
        common_edits += _plan_block(sites, op, bound, outside, missing_in, force, actions)
    new = {checkout.common: splice(sites.common, common_edits), checkout.yolo: splice(sites.yolo, yolo_edits)}
    layout_name = sites.checkout.layout.family
    copies = copy_changes(
        operators, sites.checkout.models, sites.copies, layout_name, _pointer(sites), force, actions
    )
    verify_compiles({**new, **{c.path: c.new for c in copies}})
    return _plan(sites, new, actions, copies)


def _missing_repeats(sites: _Sites, operators: Sequence[Operator]) -> list[str]:
    repeating = [op.name for op in operators if op.repeats]
    if repeating and sites.repeat is None:
        raise YolopatchError(
            f"{sites.checkout.yolo}: parse_model has no repeat collection (`if m in {{BottleneckCSP, C3, ...}}: "
            f"args.insert(2, n)`) to register {', '.join(repeating)} in; nothing was changed."
        )
    listed = names_of(sites.repeat.elts) if sites.repeat is not None else []
    return [name for name in repeating if name not in listed]


def _pointer(sites: _Sites) -> Callable[[TargetImport], str | None]:
    """Where a user's import of this layout's code points in this checkout: `models.common` in a checkout,
    `PACKAGE.models.common` in the pip package; an import of another layout's code has no place here."""
    package = sites.checkout.models.parent.name
    layout = sites.checkout.layout

    def point(imported: TargetImport) -> str | None:
        if imported.family != CHECKOUT_LAYOUT:
            return None
        bare = imported.module.removeprefix(f"{layout.package}.")
        return f"{package}.{bare}" if sites.absolute else bare

    return point


def _wanted(operators: Sequence[Operator]) -> list[str]:
    return [op.name for op in operators]


def _plan_block(
    sites: _Sites,
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
    if foreign and not force:
        raise YolopatchError(
            f"{checkout.common}:{foreign[0].lineno}: already defines its own `class {foreign[0].name}` (pasted "
            f"from a blog post?). Remove it, or run again with --force to disable it and use yolopatch's "
            "(--revert restores it)."
        )
    edits = disable_classes(text, foreign)
    if foreign:
        actions.append(
            f"{checkout.common.name}: disabled the existing class {foreign[0].name} at line {foreign[0].lineno}"
        )
    added = set(block.added) if block else set()
    added.update(site for site, names in missing_in.items() if op.name in names)
    forced = bool(foreign) or (block is not None and block.forced)
    wanted = compose_block(op.name, _REGISTRY, body, sorted(added), forced, newline_of(text))
    if block is None:
        edits.append(Edit(len(text), len(text), wanted))
        actions.append(f"{checkout.common.name}: appended class {op.name} (yolopatch {__version__})")
    elif text[block.start : block.end] != wanted:
        edits.append(Edit(block.start, block.end, wanted))
        actions.append(
            f"{checkout.common.name}: updated class {op.name} from yolopatch {block.version} to {__version__}"
        )
    return edits


def plan_revert(
    checkout: Checkout, texts: Mapping[Path, str], names: Sequence[str] | None = None, force: bool = False
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None) and exactly the names yolopatch added."""
    sites = _sites(checkout, texts, names or list(find_blocks(texts[checkout.common], checkout.common)))
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
    new = {checkout.common: splice(sites.common, common_edits), checkout.yolo: splice(sites.yolo, yolo_edits)}
    copies = copy_removals(sites.checkout.models, sites.copies, sites.blocks.values(), blocks, force, actions)
    verify_compiles(new)
    return _plan(sites, new, actions, copies)


def injected_names(checkout: Checkout, texts: Mapping[Path, str]) -> list[str]:
    """The operators yolopatch has blocks for in this checkout."""
    return list(find_blocks(texts[checkout.common], checkout.common))


def inject(checkout: Checkout, operators: Sequence[Operator], force: bool = False) -> InjectPlan:
    """Read the checkout and plan the injection of `operators`."""
    return plan_inject(checkout, read_checkout(checkout), operators, force)


def revert(checkout: Checkout, names: Sequence[str] | None = None, force: bool = False) -> InjectPlan:
    """Read the checkout and plan the revert, warning about checkpoints that need the classes."""
    texts = read_checkout(checkout)
    plan = plan_revert(checkout, texts, names, force)
    removed = [name for name in injected_names(checkout, texts) if names is None or name in names]
    return replace(plan, warnings=checkpoint_warnings(checkout, removed)) if plan.changed else plan


def _plan(
    sites: _Sites, new: Mapping[Path, str], actions: list[str], copies: Sequence[FileChange] = ()
) -> InjectPlan:
    changes = tuple(
        FileChange(path, old, new[path])
        for path, old in ((sites.checkout.common, sites.common), (sites.checkout.yolo, sites.yolo))
    )
    return InjectPlan(sites.flavour(), (*changes, *copies), tuple(actions))


def _collection(tree: ast.Module, checkout: Checkout, names: Sequence[str]) -> ast.List | ast.Tuple | ast.Set:
    """parse_model's (c1, c2) collection, or the reason there is none."""
    function = parse_model_of(tree)
    family = checkout.layout.family
    if function is None:
        raise YolopatchError(
            f"{checkout.yolo}: has no parse_model function; is this {family}? {manual_edit(names)}"
        )
    found = channel_collection(function)
    if found is None:
        raise YolopatchError(
            f"{checkout.yolo}: parse_model has no `if m in {{Conv, ...}}:` collection (an unknown fork?); "
            f"nothing was changed. {manual_edit(names)}"
        )
    return found


def _explicit_import(tree: ast.Module, checkout: Checkout, names: Sequence[str]) -> ast.ImportFrom | None:
    """yolo.py's `from models.common import A, B` (None when it star-imports common)."""
    imports = [
        n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("models.common")
    ]
    if any(a.name == "*" for n in imports for a in n.names):
        return None
    if not imports:
        raise YolopatchError(
            f"{checkout.yolo}: does not import models.common at the top level; nothing was changed. "
            f"{manual_edit(names)}"
        )
    return imports[0]


# --- checkpoints, building with the checkout's own code ----------------------------------------------------


def checkpoint_warnings(checkout: Checkout, names: Sequence[str]) -> tuple[str, ...]:
    """Checkpoints in the checkout that pickle one of the classes by name: they stop loading without it."""
    found = checkpoints_needing([checkout.models.parent], None, names)
    if not found:
        return ()
    listed = ", ".join(names)
    return (
        f"{len(found)} checkpoint(s) in this checkout hold {listed} layers ({listing(found)}); {checkout.layout.family} pickles "
        f"the class by name, so they load only while {listed} is injected. Run `yolopatch inject` again to "
        "load them.",
    )


def reference_summary(log: str) -> str:
    """The first summary line a checkout printed while building ("" when it printed none)."""
    match = _SUMMARY.search(log)
    return match.group(0) if match else ""


# --- the Target of a family with this layout ----------------------------------------------------------------


class CheckoutTarget(Target):
    """A family of this layout: YOLOv5, YOLOv7 or YOLOv9. `signature`: modules only its yamls use;
    `anchor_style`: how its stock yamls write `anchors:` ("list" of pairs or an "int" count)."""

    layout: Layout
    signature: frozenset[str] = frozenset()
    anchor_style: str = "list"
    example = "yolov5s.yaml --layers 8"

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        """A yaml with `anchors:` whose modules this family knows; its own modules weigh most."""
        if "anchors" not in values:
            return 0
        modules = list(modules)
        anchors = values["anchors"]
        style = "int" if isinstance(anchors, int) and not isinstance(anchors, bool) else "list"
        known = sum(m in self.rules.known for m in modules)
        return 1 + known + 10 * len(self.signature & set(modules)) + (style == self.anchor_style)

    def locate(self, repo: Path) -> Checkout | None:
        return locate_checkout(repo, self.layout)

    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        return inject(where, operators, force)

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        return revert(where, names, force)

    def injected(self, where: Any) -> list[str]:
        return injected_names(where, read_checkout(where))

    def check(self, request: CheckRequest) -> ModelReport:
        """The built-in builder, in a child when the yaml uses the user's operators; with --repo, the
        checkout's own Model class in a child."""
        if request.scale is not None:
            raise OptionError(
                "--scale", f"--scale {request.scale}: {request.path} has one size (no scales:)."
            )
        if request.repo is not None:
            (report,) = self.check_many([request])
            return report
        builtin = self.builtin()
        if request.fused and builtin is not None and builtin.fuse_differs:
            raise YolopatchError(
                f"{request.path}: --fused: {self.name}'s fuse() also {builtin.fuse_differs}, which yolopatch's "
                f"built-in blocks do not; fuse with {self.name}'s own code for those figures."
            )
        text, name = request.text, str(request.path)
        if request.users:
            if request.export:
                raise YolopatchError(
                    f"{name}: --export of a model with your own operators "
                    f"({', '.join(op.name for op in request.users)}) is not supported yet: export it with "
                    f"{self.name}'s own exporter after `inject`."
                )
            (result,) = check_with_users(
                self, [(text, name)], request.img, request.batch, request.fused, request.users
            )
            if isinstance(result, YolopatchError):
                raise result
            return result
        report = check_builtin(self, text, name, request.img, request.batch, request.fused)
        if request.export:
            exported = export_builtin(self, text, name, request.img, request.batch, request.export)
            report = dataclasses.replace(report, export=exported)
        return report

    def check_many(self, requests: Sequence[CheckRequest]) -> list[ModelReport]:
        """With --repo, every yaml in one child (torch and the checkout imported once)."""
        repo = requests[0].repo if requests else None
        if repo is None:
            return [self.check(request) for request in requests]
        for request in requests:
            if request.scale is not None:
                raise OptionError("--scale", f"--scale {request.scale}: {self.name} yamls have one size.")
            if request.export:
                raise YolopatchError(
                    f"{request.path}: --export builds {self.name} yamls with yolopatch's own builder; leave "
                    "out --repo (the same layers as the checkout's Model), or use the checkout's own export.py."
                )
        # the child runs in a scratch folder: every path the user typed is resolved here, where they typed it
        models = find_checkout(repo, self.layout).models.resolve()
        pairs = [str(p) for r in requests for p in (r.path.resolve(), r.path)]
        img, batch = requests[0].img, requests[0].batch
        arguments = [type(self).__module__, str(models), str(img), str(batch), *pairs]
        value = child.call(
            _CHILD, arguments, f"{models}: building with the checkout", config=find_config(Path.cwd())
        )
        results = child.reports(value)
        failed = next((r for r in results if isinstance(r, YolopatchError)), None)
        if failed is not None:
            raise failed
        return results  # type: ignore[return-value]
