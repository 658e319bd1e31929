"""A recorded user module as an `Operator` (what `apply`, `layers` and `ops` read), and its adapter class.

The adapter has the constructor convention of parse_model's (c1, c2) collection, `(c1, c2, *yaml_args)`
(`(c1, c2, n, *yaml_args)` for a csp block, whose n parse_model inserts), and maps it onto the user's
signature by keyword, passing a channel count only to a parameter the role map names as channels. It is
what the yaml names, what `inject` writes beside the user's file, and what `check` builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from fractions import Fraction
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.inject import own_module_text, retarget_imports
from yolopatch.operators.spec import Operator, Option, Values, trailing_non_defaults
from yolopatch.paste import Paste
from yolopatch.userop.params import typed_value
from yolopatch.userop.record import UserOp
from yolopatch.userop.source import ImportKind, TargetImport, read_class


def as_operator(op: UserOp) -> Operator:
    options = tuple(
        Option(name, default, f"--set {name}", _option_help(op, name), parse=_parser(default))
        for name, default in op.options
    )
    keeps = op.rule.channels == "keep"
    return Operator(
        name=op.name,
        summary=f"your {op.cls} from {op.file.name} ({op.learned})",
        paper="your module",
        title=op.cls,
        url=str(op.file),
        template="",
        options=options,
        yaml_args=_yaml_args(op, options),
        channel_problem=_channel_problem(op),
        params=_measured_only(op),
        params_formula="measured by `yolopatch check`",
        keeps_channels=keeps,
        channel_multiple=op.rule.multiple,
        own_stride=op.rule.fixed_stride,
        stride_rule=_stride_rule(op, options),
        upsamples=op.rule.upsamples,
        repeats=op.rule.channels == "csp",
        user=op,
        fusion=op.fusion,
        backbone=op.backbone,
        head=op.head,
        generated=user_paste(op),
    )


def _option_help(op: UserOp, name: str) -> str:
    role = op.roles[name]
    return {"stride": "its stride", "up": "its upsampling factor"}.get(role, f"{op.cls}'s {name}")


def _parser(default: Any) -> Callable[[str], Any]:
    """`--set NAME=TEXT` of a recorded option: a literal of its default's type."""
    return lambda text: typed_value(text, type(default), repr(default))


def _stride_param(op: UserOp) -> str | None:
    return op.rule.stride_param


def _yaml_args(op: UserOp, options: tuple[Option, ...]):  # noqa: ANN202
    stride_param = _stride_param(op)

    def args(channels: int, stride: int | Fraction, values: Values) -> list[Any]:
        if op.backbone is not None:  # its last output's channels (unscaled), then its options
            return [channels, *trailing_non_defaults(options, values)]
        if op.fusion is not None:  # its channels come from its inputs, unless an argument sets them
            return [*([channels] if op.fusion.out_param else []), *trailing_non_defaults(options, values)]
        values = dict(values)
        if stride_param and stride_param in values:
            factor = Fraction(stride)
            values[stride_param] = int(1 / factor if op.rule.upsamples else factor)
        return [channels, *trailing_non_defaults(options, values)]

    return args


def _stride_rule(op: UserOp, options: tuple[Option, ...]):  # noqa: ANN202
    """The row's stride from its args: the fixed one, or the stride/upsampling option's value."""
    fixed = op.rule.fixed_stride
    if fixed is not None:
        return lambda args: fixed
    name = _stride_param(op)
    position = 1 + next(i for i, o in enumerate(options) if o.name == name)
    default = next(o.default for o in options if o.name == name)

    def stride(args: Sequence[Any]) -> Fraction | None:
        value = args[position] if len(args) > position else default
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            return None
        return Fraction(1, value) if op.rule.upsamples else Fraction(value)

    return stride


def _channel_problem(op: UserOp):  # noqa: ANN202
    def problem(c1: int, _values: Values) -> str | None:
        if op.divisor > 1 and c1 % op.divisor:
            return f"{op.name} needs channels divisible by {op.divisor} (learned by `ops add`), and this layer has {c1}"
        if c1 < op.min_channels:
            return f"{op.name} needs at least {op.min_channels} channels (learned by `ops add`), and this layer has {c1}"
        return None

    return problem


def _measured_only(op: UserOp):  # noqa: ANN202
    def params(_c1: int, _c2: int, _values: Values) -> int:
        raise YolopatchError(f"{op.name} is your own module: `yolopatch check` measures its parameters.")

    return params


def adapter_source(op: UserOp, base: str) -> str:
    """The adapter class: `class NAME(base)` whose constructor takes parse_model's arguments."""
    if op.backbone is not None:
        from yolopatch.userop.backbone_adapter import backbone_adapter_source

        return backbone_adapter_source(op, base)
    if op.fusion is not None:
        return fusion_adapter_source(op, base)
    if op.head:
        return head_adapter_source(op, base)
    options = op.options
    head = ["c1", "c2", *(["n=1"] if op.rule.channels == "csp" else [])]
    head += [f"{name}={value!r}" for name, value in options]
    passed = _passed(op, {name for name, _ in options})
    lines = [
        f"class {op.name}({base}):",
        f'    """{op.cls} as parse_model builds it: ({", ".join(h.split("=")[0] for h in head)}) onto '
        f'{op.cls}({", ".join(op.params)}). Written by yolopatch from yolopatch.toml."""',
        "",
        f"    def __init__(self, {', '.join(head)}):",
        *_tie_check(op),
        f"        super().__init__({', '.join(passed)})",
        "",
    ]
    return "\n".join(lines)


def _tie_check(op: UserOp) -> list[str]:
    """The adapter's check of the c2 parse_model gives it where the block's own channels are tied to c1:
    c2 = c1 (keep) or N*c1 (the yaml's first argument must give parse_model N*c1; the block ignores c2)."""
    if op.rule.channels == "keep":
        return [
            "        if c2 != c1:",
            f'            raise ValueError(f"{op.name} keeps its channels: c2 ({{c2}}) must equal c1 ({{c1}})")',
        ]
    multiple = op.rule.multiple
    if multiple is None:
        return []
    return [
        f"        if c2 != {multiple} * c1:",
        "            raise ValueError(",
        f'                f"{op.name} outputs {multiple}*c1 channels: c2 ({{c2}}) must be {multiple} * c1 ({{{multiple} * c1}}); "',
        '                "write the row\'s first argument that parse_model scales to it"',
        "            )",
    ]


def fusion_adapter_source(op: UserOp, base: str) -> str:
    """A fusion class's adapter: `(c1, c2, *options)` with c1 the list of its inputs' channels, and the
    static method parse_model's fusion branch calls for the row's (c2, args), the same in every family."""
    rule = op.fusion
    assert rule is not None
    options = op.options
    head = ["c1", "c2", *[f"{name}={value!r}" for name, value in options]]
    passed = _passed(op, {name for name, _ in options})
    if rule.channels_as == "int":
        passed = [p.replace("=c1", "=c1[0]") if p.endswith("=c1") else p for p in passed]
    c2 = "scale(args[0])" if rule.out_param else _fusion_out(rule.out)
    rest = "args[1:]" if rule.out_param else "args"
    return "\n".join(
        [
            f"class {op.name}({base}):",
            f'    """{op.cls} as parse_model builds a fusion row: (c1 = its inputs\' channels, c2, '
            f"{', '.join(name for name, _ in options) or 'no options'}) onto {op.cls}({', '.join(op.params)}); "
            f'{rule}. Written by yolopatch from yolopatch.toml."""',
            "",
            f"    def __init__(self, {', '.join(head)}):",
            *_fusion_checks(op),
            f"        super().__init__({', '.join(passed)})",
            "",
            "    @staticmethod",
            "    def yolopatch_fusion(c1, args, scale):",
            '        """parse_model\'s fusion branch: the output channels and the constructor\'s arguments."""',
            f"        c2 = {c2}",
            f"        return c2, [c1, c2, *{rest}]",
            "",
        ]
    )


def head_adapter_source(op: UserOp, base: str) -> str:
    """A head's class: the user's Detect subclass as it is (its constructor is Detect's: parse_model's Detect
    collection builds it with the row's args and the input channels), under the yaml's name."""
    return "\n".join(
        [
            f"class {op.name}({base}):",
            f'    """{op.cls} as the module of a yaml\'s {op.head} row (its from and args kept), registered with '
            f'the target\'s own {op.head}. Written by yolopatch."""',
            "",
            f"    yolopatch_head = {op.head!r}",
            "",
        ]
    )


def _fusion_out(out: str) -> str:
    """The output channels of rule `out` from `c1`, the inputs' channels, as Python."""
    if out in ("sum", "first", "last", "equal"):
        return {"sum": "sum(c1)", "first": "c1[0]", "last": "c1[-1]", "equal": "c1[0]"}[out]
    multiple, _, index = out.rpartition("input:")
    return f"{multiple.rstrip('*')} * c1[{index}]" if multiple else f"c1[{index}]"


def _fusion_checks(op: UserOp) -> list[str]:
    """What the class needs of its inputs, checked when the model is built (the message names the row's)."""
    rule = op.fusion
    assert rule is not None
    lines = []
    if rule.counts:
        lines += [
            f"        if len(c1) not in {rule.counts!r}:",
            f'            raise ValueError(f"{op.name} takes {" or ".join(map(str, rule.counts))} inputs, not {{len(c1)}}")',
        ]
    if rule.widths == "equal":
        lines += [
            "        if len(set(c1)) > 1:",
            f'            raise ValueError(f"{op.name} needs equal input widths, not {{c1}}")',
        ]
    return lines


def _passed(op: UserOp, options: set[str]) -> list[str]:
    """`param=value` for the user's constructor: channel counts only where the map says channels."""
    by_role = {"c1": "c1", "c2": "c2", "n": "n"}
    passed = []
    for name in op.params:
        role = op.roles[name]
        if role in by_role and not (role == "n" and op.rule.channels != "csp"):
            passed.append(f"{name}={by_role[role]}")
        elif name in options:
            passed.append(f"{name}={name}")
        elif name in op.values:
            passed.append(f"{name}={op.values[name]!r}")
    return passed


def module_stem(op: UserOp) -> str:
    """The copied module's name in the target: `yolopatch_` and the file's stem (as an identifier)."""
    stem = "".join(c if c.isalnum() or c == "_" else "_" for c in op.file.stem)
    return f"yolopatch_{stem}"


def user_paste(op: UserOp) -> Paste:
    """The adapter as inject pastes it: it imports the user's class from the copied module."""
    alias = f"_{op.cls}Base"
    line = f"from .{module_stem(op)} import {op.cls} as {alias}"
    imports: tuple[tuple[frozenset[str], str], ...] = ((frozenset({alias}), line),)
    if op.backbone is not None and op.backbone.factory:  # a wrapper module around what the factory returns
        imports += ((frozenset({"nn"}), "from torch import nn"),)
        if op.backbone.factory == "timm":
            imports = ((frozenset({"nn"}), "from torch import nn"),)
    return Paste(adapter_source(op, alias), imports, frozenset(), (op.name,))


def recorded_operators() -> list[Operator]:
    """In a build child: the user's operators its parent found in yolopatch.toml, as data (no import of the
    user's file: a target's own code builds them, or `adapter_classes` when asked)."""
    from yolopatch.userop.record import child_config, load

    return [as_operator(op) for op in load(child_config()).values()]


def user_operators(ops: Mapping[str, UserOp]) -> dict[str, Operator]:
    return {name.lower(): as_operator(op) for name, op in ops.items()}


def copied_module(op: UserOp, kind: ImportKind, point: Callable[[TargetImport], str]) -> str:
    """The user's file as the target's module: its imports of the target's own code (`kind`) pointed where
    `point` says, then the header `inject` and `--revert` recognise it by. (Imports of another family's code
    are refused before any plan: yolopatch.commands.inject.)"""
    source = read_class(op.file, op.cls, [kind])
    rewrite = {i.module: point(i) for i in source.target_imports if point(i) != i.module}
    text = retarget_imports(read_text(op.file), op.file, rewrite)
    return own_module_text(text, op.file.name)
