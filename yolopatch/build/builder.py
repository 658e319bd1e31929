"""The built-in builder: a model from a yaml without a checkout, and without `eval`, for the targets that
give their blocks (Target.builtin: the parse_model shape the checkout families share).

Module names resolve from a fixed table, arguments are literals, and `activation:` is parsed, not
evaluated: a yaml cannot run code here (the families' parse_model `eval`s both).
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from yolopatch.channels import Shape, Simulation, make_divisible, normalize_module
from yolopatch.csp import slot_of, split_variant
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import ModelYaml
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.targets.base import Builtin
from yolopatch.templates import common as modules

# Every family's table has these besides its own blocks.
COMMON: dict[str, type[nn.Module]] = {
    "Concat": modules.Concat,
    "Index": importlib.import_module("yolopatch.templates.index").Index,
    **{
        op.name: getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)
        for op in OPERATORS.values()
    },
    "nn.Upsample": nn.Upsample,
    "nn.MaxPool2d": nn.MaxPool2d,
    "nn.ZeroPad2d": nn.ZeroPad2d,
    "nn.BatchNorm2d": nn.BatchNorm2d,
    "nn.ConvTranspose2d": nn.ConvTranspose2d,
    "nn.Conv2d": nn.Conv2d,
    "nn.Identity": nn.Identity,
}
ACTIVATIONS = frozenset(
    {
        "SiLU",
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "Hardswish",
        "Mish",
        "GELU",
        "ELU",
        "Sigmoid",
        "Tanh",
        "Identity",
        "Hardsigmoid",
        "PReLU",
        "CELU",
        "SELU",
    }
)


class BuiltModel(nn.Module):
    """What a checkout family's Model holds: `model` (a Sequential of layers tagged i, f, type, np) and `save`."""

    def __init__(self, layers: nn.Sequential, save: list[int]):
        super().__init__()
        self.model, self.save = layers, save
        self.stride = torch.zeros(0)  # set from Detect's inputs; stays empty for a model without a head

    def fuse(self):
        """Conv + BatchNorm folded in every Conv (and DWConv), as the families' Model.fuse() does."""
        for module in self.modules():
            if isinstance(module, modules.Conv):
                module.fuse()
        return self

    def forward(self, x):
        outputs: list[Any] = []
        for layer in self.model:
            if layer.f != -1:
                x = (
                    outputs[layer.f]
                    if isinstance(layer.f, int)
                    else [x if j == -1 else outputs[j] for j in layer.f]
                )
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x


def build_model(
    model: ModelYaml,
    simulation: Simulation,
    builtin: Builtin,
    users: Mapping[str, type[nn.Module]] | None = None,
    repeats: frozenset[str] = frozenset(),
    operators: Sequence[Operator] = (),
) -> BuiltModel:
    """Build the model a yaml describes, as its target's parse_model would, then compute its strides.
    `users`: the adapter classes of the user's own operators, registered in the (c1, c2) collection (and,
    for those in `repeats`, in the repeat collection), as `inject` registers them; `operators` their specs,
    for `--into` classes (C3_CBAM) built on them. `builtin`: the blocks and tables of the yaml's target;
    the simulation carries its geometry."""
    geo = simulation.geometry
    rows = model.logical_rows()
    shapes = simulation.shapes
    activation = parse_activation(model.values.get("activation"), model.name)
    modules._ACTIVATION.append(activation or nn.SiLU())  # one shared instance, as the families do
    try:
        layers: list[nn.Module] = []
        save: list[int] = []
        for index, (source, number, name, raw_args) in enumerate(rows):
            table = {**COMMON, **builtin.modules, **(users or {})}
            variants = _variants(name, table, operators, geo.rules.csp, builtin)
            table.update(variants)
            row = _Row(index, source, number, name, raw_args)
            layer = _build_layer(model, row, shapes, geo, table, builtin, repeats | set(variants))
            save.extend(x % index for x in ([source] if isinstance(source, int) else source) if x != -1)
            layers.append(layer)
    finally:
        modules._ACTIVATION.pop()
    built = BuiltModel(nn.Sequential(*layers), sorted(save))
    _set_strides(built, rows, shapes, builtin)
    return built


def parse_activation(text: Any, name: str) -> nn.Module | None:
    """`nn.LeakyReLU(0.1)` and the like, parsed with ast: only torch.nn activations with literal arguments."""
    if text is None:
        return None
    try:
        node = ast.parse(str(text), mode="eval").body
        if isinstance(node, ast.Attribute):
            node = ast.Call(func=node, args=[], keywords=[])
        if not isinstance(node, ast.Call):
            raise ValueError(text)
        func = node.func
        cls = (
            func.attr
            if isinstance(func, ast.Attribute) and ast.unparse(func.value) in ("nn", "torch.nn")
            else None
        )
        args = [ast.literal_eval(a) for a in node.args]
        kwargs = {str(k.arg): ast.literal_eval(k.value) for k in node.keywords}
    except (SyntaxError, ValueError, AttributeError, TypeError):
        cls = None
    if cls not in ACTIVATIONS:
        raise YolopatchError(
            f"{name}: activation: {text!r} is not a torch.nn activation with literal arguments "
            f"(e.g. nn.SiLU(), nn.LeakyReLU(0.1)); yolopatch never evaluates yaml text."
        )
    return getattr(nn, cls)(*args, **kwargs)


def _variants(
    name: str,
    table: Mapping[str, Any],
    operators: Sequence[Operator],
    csp: Mapping[str, Any],
    builtin: Builtin,
) -> dict[str, type]:
    """The `--into` class a row names (C3_CBAM): the class `inject` writes (csp.variant_source), made here
    from the CSP block and the slot without compiling any source."""
    specs = {op.name: op for op in [*OPERATORS.values(), *operators]}
    parts = split_variant(normalize_module(name), csp, [n for n in specs if n in table])
    if parts is None or builtin.bottleneck is None:
        return {}
    block, op = parts
    slot, _ = slot_of(specs[op])
    return {name: variant_class(name, table[block], builtin.bottleneck, table[op], slot or "keep")}


def variant_class(name: str, block: Any, bottleneck: type, operator: Any, slot: str) -> type:
    """`block` with `operator` in each of its bottlenecks: after their two convolutions (a keep slot, before
    the shortcut add) or in place of their 3x3 convolution (a conv slot)."""

    def fill(b: Any) -> None:
        conv = b.cv2.conv
        if slot == "keep":
            b.cv2 = nn.Sequential(b.cv2, operator(conv.out_channels, conv.out_channels))
        else:
            b.cv2 = operator(conv.in_channels, conv.out_channels)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        block.__init__(self, *args, **kwargs)
        for b in [m for m in self.m.modules() if isinstance(m, bottleneck)]:
            fill(b)

    doc = f"{block.__name__} with {operator.__name__} in each bottleneck ({slot} slot; yolopatch, `apply --into`)."
    return type(name, (block,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


@dataclass(frozen=True)
class _Row:
    index: int
    source: Any
    number: int
    name: str
    args: Sequence[Any]


def _build_layer(
    model: ModelYaml,
    row: _Row,
    shapes: Sequence[Shape],
    geo: Any,
    table: Mapping[str, Any],
    builtin: Builtin,
    repeats: set[str] | frozenset[str],
) -> nn.Module:
    module_name = normalize_module(row.name)
    where = f"{model.name}: layer {row.index} ({row.name})"
    if module_name not in table:
        raise YolopatchError(
            f"{where}: unknown module; the built-in builder knows {', '.join(sorted(table))}. "
            "Add your own module with `yolopatch ops add FILE.py:CLASS`, or build with your checkout: "
            "yolopatch check MODEL.yaml --repo PATH/TO/checkout"
        )
    args, n = _arguments(model, row, shapes, geo, table, builtin, repeats, where)
    cls = table[module_name]
    try:
        layer = nn.Sequential(*(cls(*args) for _ in range(n))) if n > 1 else cls(*args)
    except (TypeError, ValueError, AssertionError) as exc:
        raise YolopatchError(f"{where}: cannot build {module_name}{tuple(args)}: {exc}") from None
    # parse_model's tags; `type` shadows nn.Module.type on purpose, as the families' own layers do
    layer.i, layer.f, layer.type = row.index, row.source, row.name  # type: ignore[method-assign,assignment]
    layer.np = sum(p.numel() for p in layer.parameters())  # type: ignore[assignment]
    return layer


def _arguments(
    model: ModelYaml,
    row: _Row,
    shapes: Sequence[Shape],
    geo: Any,
    table: Mapping[str, Any],
    builtin: Builtin,
    repeats: set[str] | frozenset[str],
    where: str,
) -> tuple[list[Any], int]:
    """The constructor arguments and repeat count parse_model gives the row."""
    module_name = normalize_module(row.name)
    args = [_literal(a, model.values, where) for a in row.args]
    n = max(round(row.number * geo.depth), 1) if row.number > 1 else row.number
    shape = shapes[row.index]
    own = module_name not in builtin.modules and module_name not in COMMON  # users' and --into classes
    fusion = getattr(table[module_name], "yolopatch_fusion", None)
    if getattr(table[module_name], "yolopatch_backbone", None):  # as parse_model's backbone branch
        args = args[1:]
    elif fusion is not None:  # as parse_model's fusion branch that inject writes
        sources = [row.source] if isinstance(row.source, int) else row.source
        c1 = [shapes[row.index + x if x < 0 else x].c2 for x in sources]
        _c2, args = fusion(
            c1, args, lambda c: make_divisible(min(c, geo.max_channels) * geo.width, geo.divisor)
        )
    elif module_name in geo.rules.channel_modules or own:
        args = [shape.c1, shape.c2, *args[1:]]
        if module_name in builtin.repeat_inside or module_name in repeats:
            args.insert(2, n)
            n = 1
    elif module_name == "nn.BatchNorm2d":
        args = [shape.c1]
    elif module_name in builtin.input_first:
        args = [shape.c1, *args]
    elif module_name in builtin.heads:
        sources = [row.source] if isinstance(row.source, int) else row.source
        args.append([shapes[x].c2 for x in sources])
        if module_name in builtin.anchor_heads and isinstance(args[1], int):
            args[1] = [list(range(args[1] * 2))] * len(sources)
        if module_name in builtin.scaled_head_argument:
            at = builtin.scaled_head_argument[module_name]
            args[at] = make_divisible(args[at] * geo.width, geo.divisor)
    return args, n


def _literal(value: Any, values: dict[str, Any], where: str) -> Any:
    """A yaml argument as parse_model would read it, without eval: names nc/anchors, None/True/False, literals."""
    if not isinstance(value, str):
        return value
    if value.startswith(("nn.", "torch.nn.")) and "(" in value:
        return parse_activation(value, where)  # some tiny models' rows pass nn.LeakyReLU(0.1) as Conv's act
    if value in ("nc", "anchors"):
        return values.get(value)
    if value in ("None", "True", "False"):
        return {"None": None, "True": True, "False": False}[value]
    try:
        return ast.literal_eval(value)
    except (SyntaxError, ValueError):
        pass
    if value.isidentifier():
        return value  # a plain word such as 'nearest', as parse_model keeps it after a NameError
    raise YolopatchError(
        f"{where}: argument {value!r} is not a literal; yolopatch never evaluates yaml text."
    )


def _set_strides(built: BuiltModel, rows: list[Any], shapes: Sequence[Shape], builtin: Builtin) -> None:
    """The head's strides, from the yaml's own stride bookkeeping (the families run a 256x256 pass for them);
    `measure` then checks every layer's output size against them."""
    head = built.model[-1]
    source = rows[-1][0]
    if normalize_module(rows[-1][2]) in builtin.heads and not isinstance(source, int):
        strides = [shapes[x].stride for x in source]
        if all(s is not None for s in strides):
            head.stride = built.stride = torch.tensor([float(s) for s in strides])  # type: ignore[arg-type]
