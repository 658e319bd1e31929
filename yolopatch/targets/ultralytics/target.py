"""The ultralytics target (YOLOv8, YOLO11, YOLO12, YOLO26; ultralytics 8.1 to 8.4).

Everything yolopatch knows about this family lives here, read from ultralytics' own code across 8.1.0 to
8.4.x (docs/ultralytics-notes.md): parse_model's tables; how to find a checkout or the installed package;
where inject edits (a module file of our own under nn/modules/, its import and `__all__` entry in
nn/modules/__init__.py, the name in tasks.py's import and in parse_model's (c1, c2) collection).

A model yaml without `anchors:` belongs here. `scales:` gives [depth, width, max_channels] per scale;
parse_model computes c2 = make_divisible(min(c2, max_channels) * width, 8) for its (c1, c2) collection,
except when c2 equals nc.
"""

from __future__ import annotations

import ast
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import __version__, child
from yolopatch.checkpoints import checkpoints_needing, listing
from yolopatch.csp import CspBlock
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.inject import (
    Block,
    InjectPlan,
    block_body,
    bound_names,
    compose_block,
    find_blocks,
    names_insertion,
    names_of,
    names_removal,
    offset,
    one_per_line,
    parse_python,
    refuse_edited,
    refuse_revert_edited,
    statement_insertion,
    statement_removal,
    verify_compiles,
)
from yolopatch.operators.spec import Operator
from yolopatch.paste import operator_paste
from yolopatch.rules import Rules
from yolopatch.splice import Edit, newline_of, splice
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.userop.copies import copy_changes, copy_removals
from yolopatch.userop.record import find_config

if TYPE_CHECKING:
    from yolopatch.report import Conditions, Latency, ModelReport
    from yolopatch.userop.source import TargetImport

# parse_model's (c1, c2) collection, the union over 8.1 to 8.4 (Classify is there too, but it is a head)
CHANNEL_MODULES = frozenset(
    {
        "Conv",
        "ConvTranspose",
        "GhostConv",
        "Bottleneck",
        "GhostBottleneck",
        "SPP",
        "SPPF",
        "C2fPSA",
        "C2PSA",
        "DWConv",
        "Focus",
        "BottleneckCSP",
        "C1",
        "C2",
        "C2f",
        "C3k2",
        "RepNCSPELAN4",
        "ELAN1",
        "ADown",
        "AConv",
        "SPPELAN",
        "C2fAttn",
        "C3",
        "C3TR",
        "C3Ghost",
        "nn.ConvTranspose2d",
        "DWConvTranspose2d",
        "C3x",
        "RepC3",
        "PSA",
        "SCDown",
        "C2fCIB",
        "A2C2f",
    }
)
HEADS = frozenset(
    {
        "Detect",
        "Segment",
        "Pose",
        "OBB",
        "Classify",
        "WorldDetect",
        "YOLOEDetect",
        "YOLOESegment",
        "v10Detect",
        "RTDETRDecoder",
        "Depth",
        "SemanticSegment",
        "Segment26",
        "Pose26",
        "OBB26",
        "YOLOESegment26",
    }
)
PASSTHROUGH = frozenset({"nn.Upsample", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.Identity", "Silence"})
_NOT_A_CHANNEL_COUNT = "its first argument is not an output channel count"
NOT_REPLACEABLE = {
    **{head: "it is a head of the model, not a feature map" for head in HEADS},
    "Concat": "it joins several inputs; {op} takes one",
    "nn.Upsample": _NOT_A_CHANNEL_COUNT,
    "nn.MaxPool2d": _NOT_A_CHANNEL_COUNT,
    "nn.ZeroPad2d": _NOT_A_CHANNEL_COUNT,
    "nn.BatchNorm2d": _NOT_A_CHANNEL_COUNT,
    "nn.Identity": "it has no output channel argument",
    "Silence": "it has no output channel argument",
    "AIFI": "its first argument is its hidden width, not an output channel count",
    "HGStem": "its arguments are not scaled like Conv's (parse_model passes them as written)",
    "HGBlock": "its arguments are not scaled like Conv's (parse_model passes them as written)",
    "ResNetLayer": "its first argument is its input channels",
    "CBLinear": "its output is a list of feature maps",
    "CBFuse": "it fuses several inputs; {op} takes one",
    "Index": "it picks one output of a list",
    "TorchVision": "it wraps a torchvision model whose arguments are not scaled like Conv's",
    "ImagePoolingAttn": "its output is a text embedding, not a feature map",
    "Focus": "its space-to-depth step is not a convolution",
    "nn.ConvTranspose2d": "it upsamples; {op} cannot",
    "ConvTranspose": "it upsamples; {op} cannot",
    "DWConvTranspose2d": "it upsamples; {op} cannot",
}


def _first(args: Sequence[Any]) -> int | None:
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else None


def _resnet_channels(args: Sequence[Any]) -> int | None:
    if len(args) < 4 or not isinstance(args[1], int):
        return None
    return args[1] if args[3] else args[1] * 4  # the first layer is a stem; others expand 4x


def _resnet_stride(args: Sequence[Any]) -> Fraction | None:
    if len(args) < 4 or not isinstance(args[2], int):
        return None
    return Fraction(4) if args[3] else Fraction(args[2])  # the stem is a stride-2 conv and a stride-2 pool


# --into: yaml args [c2, shortcut, g, e] (C2f, C3); C3k2's [c2, c3k, e], c3k set by parse_model at m, l, x
CSP = {
    "C2f": CspBlock("C2f", e_at=3),
    "C3k2": CspBlock("C3k2", e_at=2, c3k_scales=frozenset({"m", "l", "x"}), c3k_at=1, inner_e=0.5),
    "C3": CspBlock("C3", e_at=3),
}

RULES = Rules(
    family="ultralytics",
    channel_modules=CHANNEL_MODULES,
    strided=frozenset({"Conv", "GhostConv", "DWConv", "SCDown", "GhostBottleneck", "nn.Conv2d"}),
    upsampling=frozenset({"ConvTranspose", "nn.ConvTranspose2d", "DWConvTranspose2d"}),
    heads=HEADS,
    passthrough=PASSTHROUGH,
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "ADown": lambda args: Fraction(2),
        "AConv": lambda args: Fraction(2),
        "HGStem": lambda args: Fraction(4),
        "Focus": lambda args: Fraction(2),
        "ResNetLayer": _resnet_stride,
        "TorchVision": lambda args: None,
        "Index": lambda args: None,
    },
    special={
        # parse_model passes these arguments as written: no width scaling, no max_channels clamp
        "HGStem": lambda args, c_in, previous: args[1] if len(args) > 1 else None,
        "HGBlock": lambda args, c_in, previous: args[1] if len(args) > 1 else None,
        "ResNetLayer": lambda args, c_in, previous: _resnet_channels(args),
        "Index": lambda args, c_in, previous: _first(args),
        "TorchVision": lambda args, c_in, previous: _first(args),
        "CBFuse": lambda args, c_in, previous: c_in[-1],
        "CBLinear": lambda args, c_in, previous: None,  # a list of maps: only CBFuse reads them
        "ImagePoolingAttn": lambda args, c_in, previous: None,
        # these branches never set c2: parse_model records the previous row's channels again
        "AIFI": lambda args, c_in, previous: previous,
        "nn.BatchNorm2d": lambda args, c_in, previous: previous,
    },
    stride_from_last=frozenset({"CBFuse"}),
    exempt="nc",
    csp=CSP,
)


# --- inject: a module file of our own, registered in nn/modules/__init__.py and nn/tasks.py ---------------

# The classes ultralytics.nn.modules exports (8.4.190's __all__, a superset of 8.1's): a user's module must
# not take one of these names (ultralytics has its own ADown, CBAM, Attention...).
DEFINED = frozenset(
    "A2C2f AConv ADown AIFI Attention BNContrastiveHead Bottleneck BottleneckCSP C1 C2 C2PSA C2f C2fAttn C2fCIB "
    "C2fPSA C3 C3Ghost C3TR C3k2 C3x CBAM CBFuse CBLinear CIB ChannelAttention Classify Concat ContrastiveHead "
    "Conv Conv2 ConvTranspose DFL DWConv DWConvTranspose2d DeformableTransformerDecoder "
    "DeformableTransformerDecoderLayer Depth Detect ELAN1 Focus GhostBottleneck GhostConv HGBlock HGStem "
    "ImagePoolingAttn Index LRPCHead LayerNorm2d LightConv MLP MLPBlock MSDeformAttn MaxSigmoidAttnBlock OBB "
    "OBB26 PSA Pose Pose26 Proto RTDETRDecoder RepC3 RepConv RepNCSPELAN4 RepVGGDW ResNetLayer SCDown SPP "
    "SPPELAN SPPF Segment Segment26 SemanticSegment SpatialAttention TorchVision TransformerBlock "
    "TransformerEncoderLayer TransformerLayer WorldDetect YOLOEDetect YOLOESegment YOLOESegment26 v10Detect "
    "C3k".split()
)

MODULE_FILE = "yolopatch.py"
MODULE = "ultralytics.nn.modules.yolopatch"
HEADER = (
    '"""Operators added by yolopatch, registered in nn/modules/__init__.py and nn/tasks.py.\n'
    "\n"
    "`yolopatch inject --revert` removes them, their registration and this file.\n"
    '"""\n'
)
# What a block's marker records it added, so that --revert removes exactly those: the import in
# nn/modules/__init__.py, the `__all__` entry, the name in tasks.py's import list, the collection entry
# ("tasks" and the __init__ pair are replaced by one explicit tasks.py import for a name ultralytics defines).
_REGISTRY = "registration"


@dataclass(frozen=True)
class Package:
    """An `ultralytics` package folder: a git checkout's, or an installed one (site-packages)."""

    root: Path
    installed: bool = False

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def import_paths(self) -> tuple[Path, ...]:
        return (self.root.parent,)

    @property
    def kind(self) -> str:
        """What the user pointed at, in their words: an installed package, a git checkout, or a folder that
        holds the package (an unpacked wheel or a copy) and is neither."""
        if self.installed:
            return "installed package"
        if any((folder / ".git").exists() for folder in (self.root.parent, *self.root.parent.parents[:2])):
            return "checkout"
        return "package folder"

    @property
    def tasks(self) -> Path:
        return self.root / "nn" / "tasks.py"

    @property
    def init(self) -> Path:
        return self.root / "nn" / "modules" / "__init__.py"

    @property
    def module(self) -> Path:
        return self.root / "nn" / "modules" / MODULE_FILE

    @property
    def version_file(self) -> Path:
        return self.root / "__init__.py"

    @property
    def siblings(self) -> list[Path]:
        """ultralytics' own module files: the classes they define are never shadowed."""
        folder = self.root / "nn" / "modules"
        return sorted(
            p
            for p in folder.glob("*.py")
            if p.name not in ("__init__.py", MODULE_FILE) and not p.name.startswith("yolopatch_")
        )

    @property
    def copies(self) -> list[Path]:
        """The users' modules inject copied into nn/modules/ (yolopatch_*.py)."""
        return sorted((self.root / "nn" / "modules").glob("yolopatch_*.py"))


def is_package(root: Path) -> bool:
    return (root / "nn" / "tasks.py").is_file() and (root / "nn" / "modules" / "__init__.py").is_file()


def find_package(repo: Path) -> Package | None:
    """The ultralytics package of a checkout (its root or the package folder itself); None: not one."""
    for root in (repo / "ultralytics", repo):
        if is_package(root):
            return Package(root)
    return None


def read_package(package: Package) -> dict[Path, str | None]:
    """The texts inject reads: tasks.py, nn/modules/__init__.py, our module file (None when absent) and
    ultralytics' own module files."""
    texts: dict[Path, str | None] = {
        package.tasks: read_text(package.tasks),
        package.init: read_text(package.init),
    }
    texts[package.module] = read_text(package.module) if package.module.is_file() else None
    texts.update({path: read_text(path) for path in [*package.siblings, *package.copies]})
    if package.version_file.is_file():
        texts[package.version_file] = read_text(package.version_file)
    return texts


def package_version(init_text: str) -> str:
    """`__version__` as ultralytics/__init__.py assigns it ("" when it is not a plain string)."""
    for node in ast.parse(init_text.lstrip("\ufeff")).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return ""


def manual_edit(names: Sequence[str]) -> str:
    listed = ", ".join(names)
    return (
        f"By hand: 1) put the class(es) ({listed}) into a new file ultralytics/nn/modules/{MODULE_FILE}; "
        f"2) import them in nn/modules/__init__.py and add them to its __all__; 3) in nn/tasks.py, add them to "
        "`from ultralytics.nn.modules import (...)` and to parse_model's (c1, c2) collection (the one with Conv)."
    )


@dataclass(frozen=True)
class _Sites:
    """A package's files as read, with the places inject edits (found with ast)."""

    package: Package
    init: str
    tasks: str
    module: str  # HEADER when the file does not exist yet
    exists: bool
    init_tree: ast.Module
    tasks_tree: ast.Module
    collection: ast.Set | ast.Tuple | ast.List
    collection_kind: str
    repeat: ast.Set | ast.Tuple | ast.List | None  # parse_model's repeat collection (C2f's: n inserted)
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
            f"ultralytics {version or '(version unknown)'} ({where}); tasks.py imports "
            f"nn.modules with {imports}; parse_model's (c1, c2) collection is {self.collection_kind}; "
            f"__all__ is {all_kind}"
        )


def _our_imports(tree: ast.Module, module: str) -> dict[str, ast.ImportFrom]:
    """Our one-name import statements (`from .yolopatch import SE`), by name."""
    found = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and ("." * node.level + (node.module or "")) == module:
            found.update({alias.name: node for alias in node.names})
    return found


def _sites(package: Package, texts: Mapping[Path, str | None], names: Sequence[str]) -> _Sites:
    """The places inject edits; `names`: the operators asked for, for the manual steps of an error."""
    init, tasks = texts[package.init] or "", texts[package.tasks] or ""
    module = texts.get(package.module)
    init_tree, tasks_tree = parse_python(init, package.init), parse_python(tasks, package.tasks)
    collection, kind = _collection(tasks_tree, package, names)
    repeat = _tested_collection(tasks_tree, lambda names: "C2f" in names and "Conv" not in names)
    return _Sites(
        package=package,
        init=init,
        tasks=tasks,
        module=HEADER if module is None else module,
        exists=module is not None,
        init_tree=init_tree,
        tasks_tree=tasks_tree,
        collection=collection,
        collection_kind=kind,
        repeat=repeat[0] if repeat else None,
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


def _collection(
    tree: ast.Module, package: Package, names: Sequence[str]
) -> tuple[ast.Set | ast.Tuple | ast.List, str]:
    """parse_model's (c1, c2) collection: the one with Conv that `if m in ...:` tests, written inline or
    bound to a local name first (`base_modules = frozenset({...})`). Never the repeat collection."""
    if not any(isinstance(n, ast.FunctionDef) and n.name == "parse_model" for n in ast.walk(tree)):
        raise YolopatchError(
            f"{package.tasks}: has no parse_model function; is this ultralytics? {manual_edit(names)}"
        )
    found = _tested_collection(tree, lambda names: "Conv" in names)
    if found is None:
        raise YolopatchError(
            f"{package.tasks}: parse_model has no `if m in {{Conv, ...}}:` collection (an unknown release?); "
            f"nothing was changed. {manual_edit(names)}"
        )
    return found


def _tested_collection(
    tree: ast.Module, wanted: Callable[[list[str]], bool]
) -> tuple[ast.Set | ast.Tuple | ast.List, str] | None:
    """The first collection parse_model tests `m` against (inline, or a local name bound to a literal or
    to frozenset(...) of one) whose names `wanted` accepts, and how it is written."""
    parse_model = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )
    if parse_model is None:
        return None
    local = {
        node.targets[0].id: node.value
        for node in ast.walk(parse_model)
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
    }
    for node in ast.walk(parse_model):
        if not (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == "m"
            and isinstance(node.ops[0], ast.In)
        ):
            continue
        tested, via = node.comparators[0], ""
        if isinstance(tested, ast.Name) and tested.id in local:
            via = tested.id
            tested = local[via]
        if isinstance(tested, ast.Call) and isinstance(tested.func, ast.Name) and len(tested.args) == 1:
            wrapper = tested.func.id
            tested = tested.args[0]
            via = f"a local {wrapper} `{via}`" if via else f"a {wrapper}"
        if isinstance(tested, (ast.Set, ast.Tuple, ast.List)) and wanted(names_of(tested.elts)):
            literal = {ast.Set: "set", ast.Tuple: "tuple", ast.List: "list"}[type(tested)]
            kind = f"{via} of a {literal} literal" if via else f"a {literal} literal"
            return tested, kind + (" (one name per line)" if one_per_line(tested.elts) else "")
    return None


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


def _identity_edits(sites: _Sites, names: Sequence[str]) -> list[Edit]:
    """C3k2's --into classes into `m is C3k2`: it becomes `m in {C3k2, C3k2_SE}` (then grows)."""
    node = sites.identity
    if node is None or not names:
        return []
    if isinstance(node.ops[0], ast.In):
        return [names_insertion(sites.tasks, node.comparators[0].elts, names)]  # type: ignore[attr-defined]
    start = offset(sites.tasks, node.lineno, node.col_offset)
    end = offset(sites.tasks, node.end_lineno, node.end_col_offset)  # type: ignore[arg-type]
    return [Edit(start, end, f"m in {{C3k2, {', '.join(names)}}}")]


def _identity_removal(sites: _Sites, names: Sequence[str]) -> list[Edit]:
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


def _import_insertion(text: str, tree: ast.Module, module: str, names: Sequence[str]) -> Edit:
    """Names into our import statement; the statement itself, on a line after the file's last top-level
    import (tasks.py: after its import of ultralytics.nn.modules), when it is not there yet."""
    ours = _our_import(tree, module)
    if ours is not None:
        return names_insertion(text, ours.names, names)
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    anchor = next((n for n in imports if getattr(n, "module", None) == "ultralytics.nn.modules"), imports[-1])
    return statement_insertion(text, anchor, f"from {module} import {', '.join(names)}")


def _import_removal(text: str, tree: ast.Module, module: str, names: set[str]) -> list[Edit]:
    """The inverse: the names, or the whole statement once none of its names stays."""
    ours = _our_import(tree, module)
    if ours is None:
        return []
    listed = names_of(ours.names)
    if set(listed) <= names:
        return [statement_removal(text, tree.body, ours)]
    return names_removal(text, ours.names, names)


def _quoted(text: str, elts: Sequence[ast.expr], name: str) -> str:
    """`name` as a string literal in the quotes the collection already uses."""
    segment = ast.get_source_segment(text, elts[-1]) if elts else None
    quote = segment[0] if segment and segment[0] in "'\"" else '"'
    return f"{quote}{name}{quote}"


def plan_inject(
    package: Package, texts: Mapping[Path, str | None], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    """Write each operator's block into our module file and register its name where it is missing."""
    names = [op.name for op in operators]
    sites = _sites(package, texts, names)
    _refuse_conflicts(sites, names, force)
    repeating = [op.name for op in operators if op.repeats]
    if repeating and sites.repeat is None:
        raise YolopatchError(
            f"{package.tasks}: parse_model has no repeat collection (the one with C2f that gets the row's n) "
            f"to register {', '.join(repeating)} in; nothing was changed."
        )
    missing = _missing(sites, names, repeating, _c3k2_variants(operators))
    init_edits, tasks_edits, actions = _registration_edits(sites, missing)
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
    copies = copy_changes(
        operators, folder, sites.copies, "ultralytics", _pointer, force, actions, "nn/modules/"
    )
    verify_compiles({**new, **{c.path: c.new for c in copies}})
    return _plan(sites, new, actions, _upgrade_warnings(sites), copies)


def _pointer(imported: TargetImport) -> str | None:
    return imported.module if imported.family == "ultralytics" else None


def _missing(
    sites: _Sites, names: Sequence[str], repeating: Sequence[str] = (), c3k2: Sequence[str] = ()
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
        "collection": [n for n in names if n not in names_of(sites.collection.elts)],
        "repeat": [n for n in repeating if sites.repeat is None or n not in names_of(sites.repeat.elts)],
        "identity": [n for n in c3k2 if sites.identity is not None and n not in _identity_names(sites)],
    }


def _identity_names(sites: _Sites) -> list[str]:
    node = sites.identity
    if node is None or not isinstance(node.ops[0], ast.In):
        return []
    return names_of(node.comparators[0].elts)  # type: ignore[attr-defined]


def _refuse_conflicts(sites: _Sites, names: Sequence[str], force: bool) -> None:
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
    sites: _Sites, missing: Mapping[str, list[str]]
) -> tuple[list[Edit], list[Edit], list[str]]:
    init_edits: list[Edit] = []
    tasks_edits: list[Edit] = []
    actions: list[str] = []
    init_name, tasks_name = "nn/modules/__init__.py", "nn/tasks.py"
    if missing["init"]:
        init_edits.append(_import_insertion(sites.init, sites.init_tree, ".yolopatch", missing["init"]))
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
        tasks_edits.append(_import_insertion(sites.tasks, sites.tasks_tree, MODULE, missing["explicit"]))
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


def _block_edit(sites: _Sites, op: Operator, added_now: set[str], force: bool) -> list[Edit]:
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


def _provided(sites: _Sites, names: frozenset[str]) -> list[str]:
    """Imports of what a block takes from ultralytics (Conv, C2f, Bottleneck), from the file defining each."""
    by_file: dict[str, list[str]] = {}
    for name in sorted(names):
        where = sites.defined.get(name, "conv.py:0").split(":")[0]
        by_file.setdefault(where.removesuffix(".py"), []).append(name)
    return [f"from .{module} import {', '.join(listed)}" for module, listed in sorted(by_file.items())]


def _lost(sites: _Sites) -> list[str]:
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


def _upgrade_warnings(sites: _Sites) -> tuple[str, ...]:
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


def plan_revert(
    package: Package,
    texts: Mapping[Path, str | None],
    names: Sequence[str] | None = None,
    force: bool = False,
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None), exactly the registration yolopatch added,
    and our module file once no block is left in it."""
    sites = _sites(
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
    new: dict[Path, str | None] = {
        package.init: splice(sites.init, init_edits),
        package.tasks: splice(sites.tasks, tasks_edits),
        package.module: None if emptied else module,
    }
    if emptied and sites.exists:
        actions.append(f"nn/modules/{MODULE_FILE}: deleted (no operator left in it)")
    verify_compiles(new)
    return _plan(
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
    sites: _Sites, leaving: Mapping[str, set[str]], actions: list[str]
) -> tuple[list[Edit], list[Edit]]:
    init_edits = _import_removal(sites.init, sites.init_tree, ".yolopatch", set(leaving))
    tasks_edits = _import_removal(sites.tasks, sites.tasks_tree, MODULE, set(leaving))

    def recorded(site: str) -> list[str]:
        return [name for name, added in leaving.items() if site in added]

    if sites.all_names is not None:
        init_edits += names_removal(sites.init, sites.all_names.elts, recorded("all"))
    if not sites.star:
        tasks_edits += names_removal(sites.tasks, sites.modules_import.names, recorded("tasks"))
    tasks_edits += names_removal(sites.tasks, sites.collection.elts, recorded("collection"))
    if sites.repeat is not None:
        tasks_edits += names_removal(sites.tasks, sites.repeat.elts, recorded("repeat"))
    tasks_edits += _identity_removal(sites, recorded("identity"))
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


def _plan(
    sites: _Sites,
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


# --- finding the package a Python imports -------------------------------------------------------------------

_LOCATE = (
    "import importlib.util as u; s = u.find_spec('ultralytics'); "
    "print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"
)


def imported_from(python: str, cwd: Path) -> Path | None:
    """Where `import ultralytics` finds the package for `python` started in `cwd` (found, not imported)."""
    try:
        process = subprocess.run(
            [python, "-c", _LOCATE], capture_output=True, text=True, cwd=cwd, timeout=60, env=dict(os.environ)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise YolopatchError(
            f"--python {python}: cannot run it ({exc}). Pass the path of a Python interpreter."
        ) from None
    if process.returncode != 0:
        tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
        raise YolopatchError(
            f"--python {python}: failed to run ({tail}). Pass the path of a Python interpreter."
        )
    found = process.stdout.strip()
    return Path(found) if found else None


def installed_package(python: str) -> Package:
    """The ultralytics that `python` imports outside any checkout (site-packages, or an editable install)."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as neutral:
        root = imported_from(python, Path(neutral))
    if root is None or not is_package(root):
        raise YolopatchError(
            f"{python}: cannot import ultralytics. Install it there (`{python} -m pip install ultralytics`), "
            "or pass a checkout: `yolopatch inject PATH/TO/ultralytics`."
        )
    return Package(root, installed=True)


def location_warnings(package: Package, python: str) -> tuple[str, ...]:
    """Say when the patched copy is not the one `import ultralytics` gives (the edit would have no effect)."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as neutral:
        elsewhere = imported_from(python, Path(neutral))
    here = imported_from(python, Path.cwd())
    patched = package.root.resolve()
    if package.installed:
        if here is not None and here.resolve() != patched:
            return (
                f"in this folder, {python} imports ultralytics from {here} (a checkout), not the installed copy "
                f"patched here; scripts run from this folder will not see the operators.",
            )
        return ()
    if elsewhere is not None and elsewhere.resolve() == patched:
        return ()
    imported = f"imports ultralytics from {elsewhere}" if elsewhere else "cannot import ultralytics"
    return (
        f"{python} {imported}, not from this checkout ({package.root}): `yolo train` and scripts outside "
        f"{package.root.parent} will not see the operators. Install the checkout with "
        f"`pip install -e {package.root.parent}`, or run `yolopatch inject --installed`.",
    )


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
    lost = _lost(_sites(package, texts, [op.name for op in operators]))
    found = _checkpoints_needing(package, workdir, lost) if lost else []
    if not found:
        return plan
    warning = (
        f"{len(found)} checkpoint(s) hold {', '.join(lost)} layers ({listing(found)}) and will not load until "
        "`yolopatch inject` runs again: they pickle the classes as ultralytics.nn.modules.yolopatch."
    )
    return replace(plan, warnings=(*plan.warnings, warning))


def revert(
    package: Package, names: Sequence[str] | None = None, force: bool = False, workdir: Path | None = None
) -> InjectPlan:
    """Read the package and plan the revert, naming the checkpoints (under `workdir`, its runs/ and the
    checkout) that pickle the classes it removes: they stop loading."""
    texts = read_package(package)
    plan = plan_revert(package, texts, names, force)
    removed = list(names) if names is not None else injected_names(package)
    found = _checkpoints_needing(package, workdir, removed) if plan.changed else []
    if not found:
        return plan
    listed = ", ".join(removed)
    warning = (
        f"{len(found)} checkpoint(s) hold {listed} layers ({listing(found)}); ultralytics pickles them as "
        f"{MODULE}.{removed[0]}, so they load only where {listed} is injected (ultralytics' own error instead "
        "asks for a new training run). Run `yolopatch inject` again to load them."
    )
    return replace(plan, warnings=(warning,))


def _checkpoints_needing(package: Package, workdir: Path | None, names: Sequence[str]) -> list[Path]:
    """Checkpoints that pickle our `names`, where trained weights land: runs/ of the folder training runs
    from (ultralytics writes there) and a checkout's own folder, searched through; the folder itself, only
    its own files (it may be a home folder)."""
    here = workdir or Path.cwd()
    roots = [here / "runs"] + ([] if package.kind == "installed package" else [package.root.parent])
    return checkpoints_needing(roots, MODULE, names, shallow=[here])


def with_location_warnings(plan: InjectPlan, package: Package, python: str) -> InjectPlan:
    return replace(plan, warnings=(*plan.warnings, *location_warnings(package, python)))


# --- the Target ----------------------------------------------------------------------------------------------


class Ultralytics(Target):
    """ultralytics' own model classes build its yamls (installed, or a checkout's), always in a child."""

    name = "ultralytics"
    rules = RULES
    defined = DEFINED
    installable = "ultralytics"
    has_scales = True
    checkout_hint = "PATH/TO/ultralytics"
    times_with_own_code = True

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        """An anchor-free yaml (YOLOv8 and later); the more of its modules ultralytics knows, the surer."""
        if "anchors" in values:
            return 0
        return 1 + sum(m in self.rules.known for m in modules)

    def locate(self, repo: Path) -> Package | None:
        return find_package(repo)

    def installed(self, python: str) -> Package:
        return installed_package(python)

    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        return with_location_warnings(inject(where, operators, force), where, python)

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        return revert(where, names, force)

    def injected(self, where: Any) -> list[str]:
        return injected_names(where)

    def check(self, request: CheckRequest) -> ModelReport:
        """Build with ultralytics' own model classes in a child process, with yolopatch's operators
        registered in memory where the package lacks them, and measure; with `export`, also export the model
        as ultralytics' exporter does (yolopatch.build.export); with `fused`, the figures after its fuse()."""
        r = request
        arguments = [_root(r.repo), str(r.path.resolve()), str(r.path), r.scale or "-", str(r.img)]
        arguments += [str(r.batch), r.export or "-", "1" if r.fused else "0"]
        value = child.call(_CHILD, arguments, "building with ultralytics", config=find_config(Path.cwd()))
        (result,) = child.reports(value)
        if isinstance(result, YolopatchError):
            raise result
        return result

    def bench(
        self, requests: Sequence[CheckRequest], timing: tuple[str, bool, int]
    ) -> tuple[Conditions, dict[str, Latency]]:
        """Time the yamls with ultralytics' own model classes, all built in one child so they run in turns."""
        from yolopatch.report import Conditions, Latency

        device, half, runs = timing
        first = requests[0]
        pairs = [str(p) for r in requests for p in (r.path.resolve(), r.path)]
        arguments = [
            "--bench",
            _root(first.repo),
            first.scale or "-",
            str(first.img),
            str(first.batch),
            device,
        ]
        arguments += ["1" if half else "0", "1" if first.fused else "0", str(runs), *pairs]
        (result,) = child.call(_CHILD, arguments, "timing with ultralytics", config=find_config(Path.cwd()))
        if "error" in result:
            raise YolopatchError(result["error"])
        latencies = {name: Latency(**value) for name, value in result["latencies"].items()}
        return Conditions(**result["conditions"]), latencies

    def train_command(self, model: str) -> str:
        return f"yolo train model={model}"


def _root(repo: Path | None) -> str:
    """The folder holding the ultralytics to build with ("-": the installed one)."""
    if repo is None:
        return "-"
    package = find_package(repo)
    if package is None:
        raise YolopatchError(
            f"{repo}: not an ultralytics checkout: found no ultralytics/nn/tasks.py. Pass the checkout's "
            "root folder, or leave out --repo to use the installed ultralytics."
        )
    return str(package.root.parent.resolve())


_CHILD = "yolopatch.targets.ultralytics.child"
TARGET = Ultralytics()
