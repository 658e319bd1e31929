"""The operators' tables: `ops`, `ops NAME`, and what `ops add` learned."""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from yolopatch.formats.registry import FORMATS
from yolopatch.operators.registry import OPERATORS

if TYPE_CHECKING:
    pass
from yolopatch.hints import after_add
from yolopatch.operators.spec import Operator
from yolopatch.render.layout import Column, fitted


def operators_table(width: int = 100, users: Sequence[Operator] = ()) -> Table:
    """Every operator, the user's own after the built-ins (marked, with file and rule), fitted to `width`
    (the formula, then the channel rule, what it replaces and the paper give way: `yolopatch ops NAME`
    shows them all)."""
    columns = [
        Column("name"),
        Column("paper", drop=4, wrap=True),
        Column("yaml args", wrap=True),
        Column("channels", drop=2, wrap=True),
        Column("replaces", drop=3, wrap=True),
        Column("parameters at C", drop=1, wrap=True),
        *(Column(fmt.label, drop=5) for fmt in FORMATS),
    ]
    rows = [
        (
            [
                _marked(op),
                _origin(op),
                _yaml_args(op),
                _channel_rule(op),
                _replaces(op),
                op.params_formula,
                *(fmt.operator_form(op, short=True) for fmt in FORMATS),
            ],
            None,
        )
        for op in [*OPERATORS.values(), *users]
    ]
    title = "Operators (yolopatch apply MODEL.yaml --layers SEL --op NAME)"
    if users:
        title += "; + yours, from yolopatch.toml"
    return fitted(columns, rows, width, title=title, title_justify="left")


def _marked(op: Operator) -> str:
    return f"{op.name} +" if op.user is not None else op.name


def _origin(op: Operator) -> str:
    if op.user is None:
        return op.paper
    return f"yours: {op.user.file.name}:{op.user.cls}"


def operator_detail(op: Operator) -> Table:
    table = Table(title=f"{op.name}: {op.summary}", title_justify="left", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    example = [-1, 1, op.name, op.yaml_args(256, example_stride(op), op.defaults)]
    rows = [
        ("paper", f"{op.title}. {op.paper}. {op.url}") if op.user is None else ("class", _user_class(op)),
        ("yaml args", _yaml_args(op)),
        ("options", "; ".join(f"{o.flag} / {o.name}={o.default}: {o.help}" for o in op.options) or "none"),
        ("channels", _channel_rule(op)),
        ("replaces", _replaces(op)),
        ("--into", _slot(op)),
        *_user_rows(op),
        ("parameters at C", op.params_formula),
        ("FLOPs", f"thop's count plus {op.uncounted_note}" if op.uncounted_note else "thop's count"),
        ("example row", str(example).replace("'", "")),
        *((fmt.name, fmt.operator_form(op)) for fmt in FORMATS),
    ]
    if op.backbone is not None and op.user is not None:  # no channel rule, slot or row it replaces
        kept = {"class", "yaml args", "options", "rule", "evidence", "learned against", "recorded in"}
        rows = [
            *(row for row in rows if row[0] in kept),
            ("outputs", str(op.backbone)),
            ("replaces", f"the backbone rows that make the levels (apply MODEL.yaml --backbone {op.name})"),
        ]
    if op.head:  # its base's constructor and row: no options, slot or example of its own
        keep = (
            "class",
            "yaml args",
            "channels",
            "replaces",
            "rule",
            "evidence",
            "learned against",
            "recorded in",
        )
        rows = [row for row in rows if row[0] in keep]
    for key, value in rows:
        table.add_row(key, Text(value))
    return table


def example_stride(op: Operator) -> int | Fraction:
    """The stride of the row an example shows, as a yaml writes it (a whole number, or the fraction of an
    upsampler): the operator's own, 1/2 for an upsampler, else 1."""
    stride = op.own_stride if op.own_stride is not None else Fraction(1, 2) if op.upsamples else Fraction(1)
    return int(stride) if stride.denominator == 1 else stride


def _user_class(op: Operator) -> str:
    user = op.user
    changed = user.changed()
    return f"{user.cls} in {user.file}" + (f" (warning: {changed})" if changed else "")


def _user_rows(op: Operator) -> list[tuple[str, str]]:
    user = op.user
    if user is None:
        return []
    # an ordinary option shows its value (the --set one, else its default), as `ops add` printed it
    values = {**user.defaults, **user.values}
    mapping = (
        ", ".join(f"{p}={r if r != '-' else values.get(p, '<default>')}" for p, r in user.roles.items())
        or "none"
    )
    rows = [
        ("rule", f"{user.fusion or user.rule} ({user.learned})"),
        ("constructor", f"{user.cls}({mapping})" + (f"; --set {user.values}" if user.values else "")),
        ("evidence", "; ".join(user.evidence) or "none recorded"),
    ]
    if user.unused:
        rows.append(("warning", _unused_warning(user.name, user.unused)))
    if user.target:
        rows.append(("learned against", user.target))
    rows.append(("recorded in", str(user.config)))
    return rows


def _slot(op: Operator) -> str:
    """Where `apply --into` puts it inside a CSP block's bottlenecks, or why it cannot go there."""
    from yolopatch.csp import slot_of

    slot, why = slot_of(op)
    return f"{slot} slot: {why}" if slot else f"no: {why}"


def _unused_warning(name: str, unused: Sequence[str]) -> str:
    listed = ", ".join(unused[:4]) + (f" and {len(unused) - 4} more" if len(unused) > 4 else "")
    return (
        f"{name}'s parameters {listed} got no gradient in the probe; multi-GPU training (DDP) fails on "
        "them unless unused parameters are allowed (the targets' trainers do not allow them by default)"
    )


def learned_lines(result: Any) -> list[str]:
    """What `ops add` says: the rule with its evidence, the constructor, constraints, the yaml row."""
    op, user = result.operator, result.op
    verb = "replaced" if result.replaced else "recorded"
    reads = "[-1, 6]" if user.fusion is not None else "-1"
    lines = [
        f"{user.cls} ({result.source.path.name}:{result.source.line}): {user.fusion or user.rule} "
        f"({'fusion, ' if user.fusion else ''}{user.learned})",
        *(f"  {line}" for line in user.evidence),
        f"  constructor {user.cls}{result.roles.describe(result.source, user.values)}",
        f"  yaml row: [{reads}, 1, {op.name}, {op.yaml_args(256, example_stride(op), op.defaults)}]".replace(
            "'", ""
        ),
    ]
    if user.backbone is not None:  # the row `apply --backbone` writes, and one of its Index rows
        spec = user.backbone
        lines[-1] = (
            f"  yaml rows: [-1, 1, {op.name}, [{spec.widths[-1]}]], then [0, 1, Index, [C, K]] per level"
        )
    if user.head:  # the Detect row keeps its `from` and args; only the module changes
        lines[-1] = (
            f"  yaml row: the {user.head} row with {op.name} as its module (its own from and args kept)"
        )
    if user.target:
        lines.append(f"  learned against {user.target}")
    if user.unused:
        lines.append(f"warning: {_unused_warning(op.name, user.unused)}")
    lines.append(f"{result.change.path}: {verb} [ops.{op.name}]")
    step = result.next
    lines.append(after_add(op, step.model, step.place, step.target))
    return lines


def _yaml_args(op: Operator) -> str:
    if op.head:
        return f"the {op.head} row's own"
    return "[" + ", ".join(["C", *(f"{o.name}={o.default}" for o in op.options)]) + "]"


def _channel_rule(op: Operator) -> str:
    if op.head:
        return "its inputs' channels, as its base's"
    if op.fusion is not None:
        return f"fusion: {op.fusion} ({op.fusion.constraints()})"
    if op.user is not None:
        words = {
            "keep": "keeps channels",
            "conv": "C in, C2 out",
            "csp": "C in, C2 out, n repeats (a CSP block)",
        }.get(op.user.rule.channels, f"C in, {op.channel_multiple}·C out")
        return words + _stride_words(op)
    return (
        "keeps channels and size" if op.keeps_channels else "C in, C2 out (1x1 projection when they differ)"
    )


def _stride_words(op: Operator) -> str:
    stride = op.user.rule.stride
    if stride == "1":
        return ", size kept"
    if stride.startswith("arg:"):
        return f", stride from {stride[4:]}"
    if stride.startswith("up:"):
        return f", upsamples by {stride[3:]}"
    return f", stride {stride}"


def _replaces(op: Operator) -> str:
    if op.head:
        return f"{op.head} rows (apply MODEL.yaml --layers {op.head} --op {op.name})"
    if op.upsamples:
        return "nn.Upsample rows"
    multiplied = f" that output {op.channel_multiple}x their input's channels" if op.channel_multiple else ""
    if op.own_stride is not None and op.own_stride != 1:
        return f"layers of stride {op.own_stride}" + (
            " that keep channels" if op.keeps_channels else multiplied
        )
    if multiplied:
        return f"conv-like layers{multiplied}"
    if op.repeats:
        return "CSP rows (keeps their n)"
    if op.keeps_channels:
        return "layers that keep channels and size (else --insert)"
    return (
        "single-input conv-like layers, strided too" if op.own_stride is None else "stride-1 conv-like layers"
    )
