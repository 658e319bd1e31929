"""Planning inject and revert in a PyTorch_YOLOv4 checkout. A section type is registered in three places:
an `elif mdef['type'] == ...` branch in create_modules (builds the layer, sets `filters`); Darknet's
forward_once, which runs a layer whose class name is in its list as `module(x, out)` and any other as
`module(x)` (an operator's layer is an nn.Sequential: nothing to add, but the dispatch is checked); and
utils/parse_config.py's `supported` keys, which parse_model_cfg asserts on (a tagged `supported += [...]`
line after the list).

PyTorch_YOLOv4 builds darknet's own `[avgpool]`, `[scale_channels]` and `[sam]` (native SE and SAM): a branch
the codebase has is left alone. A section type it does not know becomes an empty layer: a silent identity.
The root models.py of the ultralytics/yolov3 archive layout (package.py) builds none of them, and its
[convolutional] drops activation=logistic, which both forms need: native SE and SAM are refused there.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.darknet.forms import key_name, native_form, native_types
from yolopatch.errors import YolopatchError
from yolopatch.files import FileChange
from yolopatch.inject import (
    Block,
    InjectPlan,
    bound_names,
    find_blocks,
    inside,
    line_end,
    offset,
    parse_python,
    verify_compiles,
)
from yolopatch.operators.spec import Operator
from yolopatch.splice import Edit, newline_of, splice
from yolopatch.targets.cfgcode.dispatch import (
    TAG,
    Chain,
    block_removal,
    branch_text,
    find_chain,
    operator_block,
    with_checkpoints,
)
from yolopatch.targets.pytorch_yolov4.package import Checkout, read_checkout
from yolopatch.userop.copies import copy_changes, copy_removals
from yolopatch.userop.source import ImportKind, TargetImport

FAMILY = "PyTorch_YOLOv4"
IMPORTS = ImportKind(FAMILY, ("utils.layers", "models.models"), "from utils.layers import FeatureConcat")
_VALUE = "str(module_def[key])"  # parse_model_cfg makes numbers of the values it can


@dataclass(frozen=True)
class Supported:
    """parse_model_cfg's `supported = [...]`: its keys, and the tagged lines yolopatch added after it."""

    node: ast.Assign
    keys: frozenset[str]
    added: Mapping[str, ast.stmt]  # by operator name

    def all_keys(self) -> frozenset[str]:
        extra = {e.value for n in self.added.values() for e in ast.walk(n) if isinstance(e, ast.Constant)}
        return self.keys | {k for k in extra if isinstance(k, str)}


@dataclass(frozen=True)
class Sites:
    checkout: Checkout
    text: str
    tree: ast.Module
    create: Chain
    runs_as_list: frozenset[str]  # the class names forward_once gives the outputs
    activations: frozenset[str]  # the activation= values create_modules' [convolutional] computes
    config: str
    supported: Supported
    blocks: Mapping[str, Block]
    copies: Mapping[Path, str]


def _by_hand() -> str:
    return (
        "Register the section type by hand: an `elif` in create_modules that builds it and sets `filters`, and its "
        "keys in utils/parse_config.py's `supported`."
    )


def _function(body: Sequence[ast.stmt], name: str) -> ast.FunctionDef | None:
    return next((n for n in body if isinstance(n, ast.FunctionDef) and n.name == name), None)


def find_sites(checkout: Checkout, texts: Mapping[Path, str]) -> Sites:
    path = checkout.models
    text = texts[path]
    tree = parse_python(text, path)
    create = _function(tree.body, "create_modules")
    darknet = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Darknet"), None)
    forward = None
    if darknet is not None:
        forward = _function(darknet.body, "forward_once") or _function(darknet.body, "forward")
    if create is None or forward is None:
        missing = "def create_modules" if create is None else "class Darknet with a forward_once"
        raise YolopatchError(f"{path}: has no {missing}; is this {checkout.layout}'s models.py? {_by_hand()}")
    names = ("output_filters", "filters", "modules", "i")
    chain = find_chain(text, create, path, "mdef", names, checkout.layout, _by_hand())
    config = texts[checkout.parse_config]
    return Sites(
        checkout,
        text,
        tree,
        chain,
        _runs_as_list(forward, path, checkout.layout),
        _activations(chain),
        config,
        _supported(config, checkout.parse_config),
        find_blocks(text, path),
        {p: t for p, t in texts.items() if p not in (path, checkout.parse_config)},
    )


def _runs_as_list(forward: ast.FunctionDef, path: Path, layout: str) -> frozenset[str]:
    """The class names of `if name in [...]: x = module(x, out)`, checked to end in `else: x = module(x)`."""
    for node in ast.walk(forward):
        test = node.test if isinstance(node, ast.If) else None
        if (
            isinstance(test, ast.Compare)
            and isinstance(test.ops[0], ast.In)
            and isinstance(test.left, ast.Name)
        ):
            assert isinstance(node, ast.If)
            last = node
            while len(last.orelse) == 1 and isinstance(last.orelse[0], ast.If):
                last = last.orelse[0]
            calls = [c for s in last.orelse for c in ast.walk(s) if isinstance(c, ast.Call)]
            if any(len(c.args) == 1 and not c.keywords for c in calls) and isinstance(
                test.comparators[0], ast.List
            ):
                elts = test.comparators[0].elts
                return frozenset(
                    e.value for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
                )
    raise YolopatchError(
        f"{path}:{forward.lineno}: {forward.name} is not in {layout}'s shape (an `if name in [...]` dispatch on "
        f"the layer's class name, ending in `else: x = module(x)`); nothing was changed. {_by_hand()}"
    )


def _activations(chain: Chain) -> frozenset[str]:
    """The strings the [convolutional] branch compares `DEF['activation']` with (the ones it computes)."""
    branch = chain.branch_of("convolutional")
    found: set[object] = set()
    for node in ast.walk(branch) if branch else ():
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Subscript):
            key = node.left.slice
            if isinstance(key, ast.Constant) and key.value == "activation":
                found.update(c.value for c in node.comparators if isinstance(c, ast.Constant))
    return frozenset(v for v in found if isinstance(v, str))


def native_refusal(
    sites: Sites, op: Operator, lacking: Sequence[str], done: str = "nothing was changed"
) -> str:
    """Why `op`'s darknet form cannot be registered in this models.py, the types it lacks being `lacking`."""
    path, layout = sites.checkout.models, sites.checkout.layout
    types = f"[{'], ['.join(lacking)}]"
    if "logistic" not in sites.activations:
        return (
            f"{path}: builds no {types} and its [convolutional] drops activation=logistic, both of which "
            f"{op.name}'s darknet form needs, so it cannot be registered in {layout}; {done}. Use an operator "
            f"with a section of its own (such as cbam), or build native {op.name} with PyTorch_YOLOv4's "
            "models/models.py or pytorchyolo."
        )
    return (
        f"{path}: builds no {types}, which {op.name}'s darknet form needs (its forward runs multi-input layers "
        f"by class name); {done}. Use a checkout of {FAMILY} whose create_modules builds them "
        "(models/models.py), or another operator."
    )


def _supported(text: str, path: Path) -> Supported:
    tree = parse_python(text, path)
    parse = _function(tree.body, "parse_model_cfg")
    found = None
    for node in parse.body if parse else []:
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["supported"]:
            found = node
    if parse is None or found is None or not isinstance(found.value, ast.List):
        raise YolopatchError(
            f"{path}: has no parse_model_cfg with a `supported = [...]` list of cfg keys; nothing was changed. "
            "Add the operator's keys where your reader checks them by hand."
        )
    keys = frozenset(
        e.value for e in found.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
    )
    added = {}
    for node in parse.body:
        tag = text[offset(text, node.lineno, 0) : line_end(text, node.lineno)].rstrip().rpartition(TAG)
        if isinstance(node, ast.AugAssign) and tag[1]:
            added[tag[2]] = node
    return Supported(found, keys, added)


def _keys(op: Operator) -> list[str]:
    if native_form(op):
        return ["from"]
    return ["filters", *(["stride"] if op.strided else []), *(key_name(o.name) for o in op.options)]


def _create_body(chain: Chain, kind: str) -> list[str]:
    q = chain.quote
    return [f"filters = _yolopatch_{kind}(mdef, output_filters, modules, {q}{kind}{q})"]


def plan_inject(
    checkout: Checkout, texts: Mapping[Path, str], operators: Sequence[Operator], force: bool = False
) -> InjectPlan:
    sites = find_sites(checkout, texts)
    text, path, config = sites.text, checkout.models, sites.config
    outside = [n for n in sites.tree.body if not inside(text, sites.blocks.values(), n)]
    bound = bound_names(outside)
    branches: list[str] = []
    lines: list[str] = []
    actions: list[str] = []
    edits: list[Edit] = []
    config_edits: list[Edit] = []
    added: list[str] = []
    for op in operators:
        registered = []
        lacking = [k for k in native_types(op) if k not in sites.create.types and k not in added]
        if native_form(op) and lacking:
            raise YolopatchError(native_refusal(sites, op, lacking))
        for kind in lacking:
            branches.append(branch_text(text, sites.create, kind, op.name, _create_body(sites.create, kind)))
            added.append(kind)
            registered.append("create")
        keys = sorted(set(_keys(op)) - sites.supported.keys)
        wanted = f"supported += {keys!r}  {TAG}{op.name}".replace("'", sites.create.quote) if keys else ""
        old = sites.supported.added.get(op.name)
        if wanted and old is None:
            lines.append(wanted)
            registered.append("supported")
        elif old is not None:
            current = config[offset(config, old.lineno, 0) : line_end(config, old.end_lineno or old.lineno)]
            if current.strip() != wanted:
                config_edits.append(_line_removal(config, old))
                lines.append(wanted)
        if registered:
            actions.append(f"{path.name}: registered [{'], ['.join(native_types(op))}] ({op.name})")
        edits += operator_block(
            text, path, sites.blocks, op, bound, outside, sorted(set(registered)), force, actions, _VALUE
        )
    edits += sites.create.insertion(text, branches)
    config_edits += _line_insertion(config, sites.supported.node, [line for line in lines if line])
    new, new_config = splice(text, edits), splice(config, config_edits)
    copies = copy_changes(
        operators, path.parent, sites.copies, IMPORTS, _pointer, force, actions, f"{path.parent.name}/"
    )
    verify_compiles({path: new, checkout.parse_config: new_config, **{c.path: c.new for c in copies}})
    changes = (FileChange(path, text, new), FileChange(checkout.parse_config, config, new_config), *copies)
    return InjectPlan(checkout.kind, changes, tuple(actions))


def _pointer(imported: TargetImport) -> str:
    return imported.module


def _line_insertion(text: str, after: ast.stmt, lines: Sequence[str]) -> list[Edit]:
    if not lines:
        return []
    newline = newline_of(text)
    indent = text[offset(text, after.lineno, 0) : offset(text, after.lineno, after.col_offset)]
    at = line_end(text, after.end_lineno or after.lineno)
    return [Edit(at, at, "".join(f"{newline}{indent}{line}" for line in lines))]


def _line_removal(text: str, node: ast.stmt) -> Edit:
    start = offset(text, node.lineno, 0) - len(newline_of(text))
    return Edit(start, line_end(text, node.end_lineno or node.lineno), "")


def plan_revert(
    checkout: Checkout, texts: Mapping[Path, str], names: Sequence[str] | None = None, force: bool = False
) -> InjectPlan:
    """Remove the blocks of the named operators (all when None), exactly their tagged branches and lines."""
    sites = find_sites(checkout, texts)
    text, path, config = sites.text, checkout.models, sites.config
    blocks = [b for b in sites.blocks.values() if names is None or b.name in names]
    edits: list[Edit] = []
    config_edits: list[Edit] = []
    actions: list[str] = []
    for block in blocks:
        edits += block_removal(text, path, block, force, actions)
        edits += sites.create.removals(text, block.name)
        if block.name in sites.supported.added:
            config_edits.append(_line_removal(config, sites.supported.added[block.name]))
    new, new_config = splice(text, edits), splice(config, config_edits)
    copies = copy_removals(
        path.parent, sites.copies, sites.blocks.values(), blocks, force, actions, f"{path.parent.name}/"
    )
    verify_compiles({path: new, checkout.parse_config: new_config})
    changes = (FileChange(path, text, new), FileChange(checkout.parse_config, config, new_config), *copies)
    return InjectPlan(checkout.kind, changes, tuple(actions))


def injected_names(checkout: Checkout) -> list[str]:
    return list(find_blocks(read_checkout(checkout)[checkout.models], checkout.models))


def inject(checkout: Checkout, operators: Sequence[Operator], force: bool = False) -> InjectPlan:
    return plan_inject(checkout, read_checkout(checkout), operators, force)


def revert(checkout: Checkout, names: Sequence[str] | None = None, force: bool = False) -> InjectPlan:
    texts = read_checkout(checkout)
    plan = plan_revert(checkout, texts, names, force)
    removed = [n for n in find_blocks(texts[checkout.models], checkout.models) if names is None or n in names]
    return with_checkpoints(plan, removed, [checkout.root], checkout.module)


def registered_types(checkout: Checkout, texts: Mapping[Path, str]) -> tuple[frozenset[str], frozenset[str]]:
    """The section types create_modules builds and the cfg keys parse_model_cfg accepts."""
    sites = find_sites(checkout, texts)
    return sites.create.types, sites.supported.all_keys()
