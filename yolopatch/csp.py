"""`--into`: an operator inside the bottlenecks of a family's CSP block, the "C2f_X" recipe.

The generated class `<CSP>_<NAME>` subclasses the target's own CSP block (C3, C2f, C3k2) and changes only
its bottlenecks, after the block has built them, so it tracks the target's definition instead of copying
it: a `keep` operator goes inside each bottleneck after its two convolutions and before the shortcut add
(C2f_EMA, C3_CBAM), a `conv` operator replaces the bottleneck's second 3x3 convolution, c_ -> c_ at
stride 1 (C2f_DCN, C2f_ODConv). parse_model treats it as the CSP block: it is registered in the (c1, c2)
and repeat collections, so the row keeps its channels, `n`, shortcut flag and expansion.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from yolopatch.operators.spec import Operator

Slot = Literal["keep", "conv"]


@dataclass(frozen=True)
class CspBlock:
    """A family's CSP block as its yaml rows write it: where the expansion `e` is among the args after c2
    (`e` default 0.5), its bottlenecks' expansion, and, for C3k2, the scales at which parse_model sets
    `c3k` (the bottlenecks then sit inside C3k blocks of expansion 0.5, with bottlenecks of expansion 1)."""

    name: str
    e_at: int
    e: float = 0.5
    c3k_scales: frozenset[str] = frozenset()
    c3k_at: int | None = None
    inner_e: float = 1.0  # its bottlenecks' own expansion: their 3x3 convolution maps int(c * e) to c


def variant_name(csp: str, op: str) -> str:
    return f"{csp}_{op}"


def split_variant(
    module: str, blocks: Mapping[str, CspBlock], names: Iterable[str]
) -> tuple[str, str] | None:
    """(CSP, operator) of a generated name such as C2f_CBAM, when both are known; None otherwise."""
    known = set(names)
    for csp in sorted(blocks, key=len, reverse=True):
        if module.startswith(f"{csp}_") and module[len(csp) + 1 :] in known:
            return csp, module[len(csp) + 1 :]
    return None


def slot_of(op: Operator) -> tuple[Slot | None, str]:
    """Which slot the operator's rule fits (None: none, with the reason)."""
    if op.head:
        return None, f"{op.name} is a detection head (its {op.head} row's)"
    if op.backbone is not None:
        return None, f"{op.name} is a whole backbone"
    if op.repeats:
        return None, f"{op.name} is a CSP block itself"
    if op.upsamples or (op.own_stride is not None and op.own_stride != 1):
        return None, f"{op.name} changes the size; a bottleneck keeps it"
    if op.channel_multiple:
        return None, f"{op.name} multiplies its channels; a bottleneck keeps them"
    if op.keeps_channels:
        return "keep", "after the bottleneck's two convolutions, before the shortcut add"
    return "conv", "in place of the bottleneck's 3x3 convolution, c_ -> c_ at stride 1"


def slot_channels(block: CspBlock, args: Sequence[Any], c2: int, scale: str) -> tuple[int, int]:
    """The channels in and out of a bottleneck's 3x3 convolution, the slot: the block's hidden width
    int(c2 * e) out, int(hidden * the bottleneck's e) in; inside C3k2's C3k blocks (at the scales where
    parse_model turns them on) the hidden width is halved again and the bottlenecks keep it."""
    e = args[block.e_at] if len(args) > block.e_at and isinstance(args[block.e_at], (int, float)) else block.e
    hidden = int(c2 * e)
    c3k = block.c3k_at is not None and len(args) > block.c3k_at and args[block.c3k_at] is True
    if scale in block.c3k_scales or c3k:
        inner = int(hidden * 0.5)
        return inner, inner
    return int(hidden * block.inner_e), hidden


def variant_source(csp: str, op: str, slot: Slot, bottleneck: str = "Bottleneck") -> str:
    """The generated class: the CSP block as the target builds it, then each bottleneck's slot filled."""
    if slot == "keep":
        fill = [
            "            c = b.cv2.conv.out_channels",
            f"            b.cv2 = nn.Sequential(b.cv2, {op}(c, c))",
        ]
        where = "after its two convolutions, before the shortcut add"
    else:
        fill = [f"            b.cv2 = {op}(b.cv2.conv.in_channels, b.cv2.conv.out_channels)"]
        where = "in place of its 3x3 convolution"
    lines = [
        f"class {variant_name(csp, op)}({csp}):",
        f'    """{csp} with {op} in each bottleneck, {where} (written by yolopatch, `apply --into`)."""',
        "",
        "    def __init__(self, *args, **kwargs):",
        "        super().__init__(*args, **kwargs)",
        f"        for b in [m for m in self.m.modules() if isinstance(m, {bottleneck})]:",
        *fill,
        "",
    ]
    return "\n".join(lines)


def variant_operator(csp: str, op: Operator) -> Operator:
    """The generated class as an operator `inject` writes after the operator's own block: it needs nn and
    the target's CSP block and Bottleneck, and parse_model must give it the row's n (the repeat collection)."""
    from dataclasses import replace

    from yolopatch.paste import Paste

    slot, _ = slot_of(op)
    name = variant_name(csp, op.name)
    source = variant_source(csp, op.name, slot or "keep")
    paste = Paste(
        source, ((frozenset({"nn"}), "import torch.nn as nn"),), frozenset({csp, "Bottleneck"}), (name,)
    )
    return replace(op, name=name, repeats=True, generated=paste, user=None, keeps_channels=False)


def variants_in(
    modules: Iterable[str], blocks: Mapping[str, CspBlock], names: Iterable[str]
) -> dict[str, tuple[str, str]]:
    """Every generated name among `modules`, with its (CSP, operator)."""
    names = list(names)
    found = {}
    for module in modules:
        parts = split_variant(module, blocks, names)
        if parts:
            found[module] = parts
    return found


def operators_used(
    modules: Iterable[str], known: Sequence[Operator], blocks: Mapping[str, CspBlock]
) -> list[Operator]:
    """The operators a yaml's modules name, each `--into` class after the operator it holds."""
    used = set(modules)
    variants = variants_in(sorted(used), blocks, [op.name for op in known])
    by_name = {op.name: op for op in known}
    inside = {op for _, op in variants.values()}
    chosen = [op for op in known if op.name in used or op.name in inside]
    return chosen + [variant_operator(csp, by_name[op]) for csp, op in variants.values()]
