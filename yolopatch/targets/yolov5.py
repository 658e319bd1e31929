"""The YOLOv5 target: YOLOv5 checkouts v3.1 to master, the `yolov5` pip package, ultralytics/yolov3.

Everything yolopatch knows about this family lives here: parse_model's module tables, how to find a
checkout, where inject edits (models/common.py gets the operator blocks; models/yolo.py gets the names in
parse_model's (c1, c2) collection and in an explicit `from models.common import ...`), the child process
environment for building with the checkout's own code, and its summary line.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import __version__
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
    copy_changes,
    copy_removals,
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
from yolopatch.operators import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.paste import operator_paste, template_paste
from yolopatch.rules import Rules
from yolopatch.splice import Edit, newline_of, splice

if TYPE_CHECKING:
    from yolopatch.userop.source import TargetImport

# parse_model's `if m in {...}` set (operators join it when injected): these get
# args = [c1, make_divisible(args[0] * gw), *args[1:]].
CHANNEL_MODULES = frozenset(
    {
        "Conv",
        "GhostConv",
        "Bottleneck",
        "GhostBottleneck",
        "SPP",
        "SPPF",
        "DWConv",
        "MixConv2d",
        "Focus",
        "CrossConv",
        "BottleneckCSP",
        "C3",
        "C3TR",
        "C3SPP",
        "C3Ghost",
        "nn.ConvTranspose2d",
        "DWConvTranspose2d",
        "C3x",
        "nn.Conv2d",  # in the set up to v3.x
    }
)
# parse_model's "insert n" set: the repeat count becomes the block's third argument.
REPEAT_INSIDE = frozenset({"BottleneckCSP", "C3", "C3TR", "C3Ghost", "C3x"})
# Modules whose third yaml argument is their stride.
STRIDED = frozenset({"Conv", "GhostConv", "DWConv", "GhostBottleneck", "CrossConv", "MixConv2d", "nn.Conv2d"})
UPSAMPLING = frozenset({"nn.ConvTranspose2d", "DWConvTranspose2d"})
HEADS = frozenset({"Detect", "Segment"})
# Why a known module's row cannot be replaced by an operator.
NOT_REPLACEABLE = {
    "Concat": "it joins several inputs; {op} takes one",
    "Detect": "it is the detection head, not a feature map",
    "Segment": "it is the segmentation head, not a feature map",
    "nn.Upsample": "its first argument is not an output channel count",
    "nn.MaxPool2d": "its first argument is not an output channel count",
    "nn.ZeroPad2d": "its first argument is not an output channel count",
    "nn.BatchNorm2d": "its first argument is not an output channel count",
    "nn.Identity": "it has no output channel argument",
    "Contract": "its first argument is a gain, not an output channel count",
    "Expand": "its first argument is a gain, not an output channel count",
    "Focus": "its space-to-depth step is not a convolution",
    "nn.ConvTranspose2d": "it upsamples; {op} cannot",
    "DWConvTranspose2d": "it upsamples; {op} cannot",
}

PASSTHROUGH = frozenset({"nn.Upsample", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.BatchNorm2d", "nn.Identity"})


def _gain(args: Sequence[Any]) -> int:
    return args[0] if args and isinstance(args[0], int) and not isinstance(args[0], bool) else 2


# --into: yaml args [c2, shortcut, g, e]
CSP = {"C3": CspBlock("C3", e_at=3)}

RULES = Rules(
    family="YOLOv5",
    channel_modules=CHANNEL_MODULES,
    strided=STRIDED,
    upsampling=UPSAMPLING,
    heads=HEADS,
    passthrough=PASSTHROUGH,
    not_replaceable=NOT_REPLACEABLE,
    stride_rules={
        "Focus": lambda args: Fraction(2),
        "Contract": lambda args: Fraction(_gain(args)),
        "Expand": lambda args: Fraction(1, _gain(args)),
    },
    special={
        "Contract": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] * _gain(args) ** 2,
        "Expand": lambda args, c_in, _previous: None if c_in[0] is None else c_in[0] // _gain(args) ** 2,
    },
    exempt="no",
    csp=CSP,
)

# YOLOv5's model_info line, e.g. "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs";
# master writes the counts with thousands separators ("6,320,733 parameters"), v4.0 to v6.0
# "Model Summary: ... 17.0 GFLOPS".
# Classes the family defines (models/common.py and experimental.py, v7.0): a user's module must not take
# one of these names, or the yaml would build YOLOv5's class instead.
DEFINED = frozenset(
    "AutoShape Bottleneck BottleneckCSP C3 C3Ghost C3SPP C3TR C3x Classify Concat Contract Conv CrossConv DWConv "
    "DWConvTranspose2d DetectMultiBackend Detections Expand Focus GhostBottleneck GhostConv Proto SPP SPPF "
    "TransformerBlock TransformerLayer Ensemble MixConv2d Sum Detect Segment Model".split()
)

_COUNT = r"\d{1,3}(?:,\d{3})+|\d+"
_SUMMARY = re.compile(
    rf"(?:\S+ summary|Model Summary): (?:{_COUNT}) layers, (?:{_COUNT}) parameters, (?:{_COUNT}) gradients"
    r"(?:, [\d.]+ GFLOP[sS])?"
)
# The settings folder YOLOv5 (YOLOV5_CONFIG_DIR) and ultralytics (YOLO_CONFIG_DIR) use when the variable is
# unset, by platform.system(); matplotlib's is ~/.config/matplotlib.
_SETTINGS_HOME = {"Windows": "AppData/Roaming", "Linux": ".config", "Darwin": "Library/Application Support"}
_REGISTRY = "yolo.py"  # where a block's recorded insertions are


@dataclass(frozen=True)
class Checkout:
    models: Path
    common: Path
    yolo: Path


def find_checkout(repo: Path) -> Checkout:
    """The models/ folder of a YOLOv5 checkout, given its root, its models/ folder or an unpacked wheel."""
    for models in (repo / "models", repo, repo / "yolov5" / "models"):
        if (models / "yolo.py").is_file() and (models / "common.py").is_file():
            return Checkout(models, models / "common.py", models / "yolo.py")
    if not repo.exists():
        raise YolopatchError(f"{repo}: no such folder.")
    raise YolopatchError(
        f"{repo}: not a YOLOv5 checkout: found no models/yolo.py and models/common.py. "
        "Pass the checkout's root folder (or its models/ folder)."
    )


def enclosing_checkout(path: Path) -> Path | None:
    """The YOLOv5 checkout a file sits in (relative to the working folder when it is below it)."""
    for folder in path.resolve().parents:
        if (folder / "models" / "yolo.py").is_file() and (folder / "models" / "common.py").is_file():
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


def manual_edit(names: Sequence[str] = ("Involution",)) -> str:
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
            "yolov5 pip package layout (absolute imports)"
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


def _sites(checkout: Checkout, texts: Mapping[Path, str]) -> _Sites:
    common, yolo = texts[checkout.common], texts[checkout.yolo]
    common_tree, yolo_tree = parse_python(common, checkout.common), parse_python(yolo, checkout.yolo)
    return _Sites(
        checkout,
        common,
        yolo,
        common_tree,
        _collection(yolo_tree, checkout),
        _repeat_collection(yolo_tree),
        _explicit_import(yolo_tree, checkout),
        find_blocks(common, checkout.common),
        imports_as_package(yolo_tree, checkout.models),
        {path: text for path, text in texts.items() if path.name.startswith("yolopatch_")},
    )


def plan_inject(
    checkout: Checkout, texts: Mapping[Path, str], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    """Add each operator's block to common.py and its name to yolo.py, where they are missing."""
    sites = _sites(checkout, texts)
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
    copies = copy_changes(
        operators, sites.checkout.models, sites.copies, "YOLOv5", _pointer(sites), force, actions
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
    """Where a user's import of YOLOv5's code points in this checkout: `models.common` in a checkout,
    `yolov5.models.common` in the pip package; another family's code has no place here."""
    package = sites.checkout.models.parent.name

    def point(imported: TargetImport) -> str | None:
        if imported.family != "YOLOv5":
            return None
        bare = imported.module.removeprefix("yolov5.")
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
            f"{checkout.common}: defines no {', '.join(absent)}, which {op.name} builds on; is this YOLOv5? "
            f"{manual_edit([op.name])}"
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
    sites = _sites(checkout, texts)
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


def inject(repo: Path, operators: Sequence[Operator], force: bool = False) -> InjectPlan:
    """Read the checkout at `repo` and plan the injection of `operators`."""
    checkout = find_checkout(repo)
    return plan_inject(checkout, read_checkout(checkout), operators, force)


def revert(repo: Path, names: Sequence[str] | None = None, force: bool = False) -> InjectPlan:
    """Read the checkout at `repo` and plan the revert, warning about checkpoints that need the classes."""
    checkout = find_checkout(repo)
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


def _collection(tree: ast.Module, checkout: Checkout) -> ast.List | ast.Tuple | ast.Set:
    """The `if m in <collection>:` of parse_model that gives modules (c1, c2) handling: the one with Conv."""
    parse_model = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "parse_model"), None
    )
    if parse_model is None:
        raise YolopatchError(f"{checkout.yolo}: has no parse_model function; is this YOLOv5? {manual_edit()}")
    for node in ast.walk(parse_model):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == "m"
            and len(node.ops) == 1
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], (ast.List, ast.Tuple, ast.Set))
            and "Conv" in names_of(node.comparators[0].elts)
        ):
            return node.comparators[0]
    raise YolopatchError(
        f"{checkout.yolo}: parse_model has no `if m in {{Conv, ...}}:` collection (an unknown fork?); "
        f"nothing was changed. {manual_edit()}"
    )


def _repeat_collection(tree: ast.Module) -> ast.List | ast.Tuple | ast.Set | None:
    """parse_model's `if m in {BottleneckCSP, C3, ...}: args.insert(2, n)` collection (None: none)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Compare)
            and isinstance(node.left, ast.Name)
            and node.left.id == "m"
            and isinstance(node.ops[0], ast.In)
            and isinstance(node.comparators[0], (ast.List, ast.Tuple, ast.Set))
        ):
            listed = names_of(node.comparators[0].elts)
            if {"BottleneckCSP", "C3"} & set(listed) and "Conv" not in listed:
                return node.comparators[0]
    return None


def _explicit_import(tree: ast.Module, checkout: Checkout) -> ast.ImportFrom | None:
    """yolo.py's `from models.common import A, B` (None when it star-imports common)."""
    imports = [
        n for n in tree.body if isinstance(n, ast.ImportFrom) and (n.module or "").endswith("models.common")
    ]
    if any(a.name == "*" for n in imports for a in n.names):
        return None
    if not imports:
        raise YolopatchError(
            f"{checkout.yolo}: does not import models.common at the top level; nothing was changed. {manual_edit()}"
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
        f"{len(found)} checkpoint(s) in this checkout hold {listed} layers ({listing(found)}); YOLOv5 pickles "
        f"the class by name, so they load only while {listed} is injected. Run `yolopatch inject` again to "
        "load them.",
    )


def child_environment(environ: Mapping[str, str], home: Path, system: str, scratch: Path) -> dict[str, str]:
    """The environment of the child that imports the checkout (YOLOv5's or ultralytics').

    The user's own settings folders are kept when set or when they exist (v6.0 and v6.1 look for a cached
    Arial.ttf there at import and download it otherwise); only a folder that does not exist yet is sent to
    `scratch`, so a check creates nothing in the home folder. pip installs and hub calls are switched off.
    """
    settings = home / _SETTINGS_HOME.get(system, "")
    defaults = {
        "YOLOV5_CONFIG_DIR": settings / "Ultralytics",
        "YOLO_CONFIG_DIR": settings / "Ultralytics",
        "MPLCONFIGDIR": home / ".config" / "matplotlib",
    }
    # ultralytics reads both as the words "True"/"False"
    env = {**environ, "PIP_NO_INDEX": "1", "YOLO_OFFLINE": "True", "YOLO_AUTOINSTALL": "False"}
    for variable, default in defaults.items():
        if not environ.get(variable) and not default.is_dir():
            env[variable] = str(scratch)
    return env


def reference_summary(log: str) -> str:
    """The first summary line a checkout printed while building ("" when it printed none)."""
    match = _SUMMARY.search(log)
    return match.group(0) if match else ""
