"""Whether an operator can replace a cfg layer or follow it, and the sections it becomes there."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from yolopatch.darknet.cfg import Cfg, Section
from yolopatch.darknet.forms import Block, block_for, matches, sam_block, se_block, section_type
from yolopatch.darknet.graph import Node, consumers
from yolopatch.operators.spec import Operator, Values


@dataclass(frozen=True)
class Request:
    """One `apply` on a cfg: the operator, its values, replace or insert, and the rewiring."""

    op: Operator
    values: Values
    insert: bool = False
    rewire: str = "all"  # with insert: "all" consumers of the layer read the operator, or only the "next"
    hidden: str = "leaky"  # a native SE's hidden activation


@dataclass(frozen=True)
class Decision:
    """What happens at one selected layer: `block` to write (None: nothing), or `reason` why not;
    `already` when the operator is there already."""

    block: Block | None = None
    reason: str = ""
    already: bool = False


def decide(cfg: Cfg, nodes: Sequence[Node], index: int, request: Request) -> Decision:
    members = block_members(cfg)
    if index in members:
        already = members[index].startswith(f"{request.op.name} ")
        return Decision(reason=f"part of the {members[index]} written there", already=already)
    if request.insert:
        return _insert(cfg, nodes, index, request)
    return _replace(cfg, nodes, index, request)


def _insert(cfg: Cfg, nodes: Sequence[Node], index: int, request: Request) -> Decision:
    node, op = nodes[index], request.op
    if node.head:
        return Decision(reason=f"a [{node.kind}] head is the model's output; nothing reads it")
    if node.channels is None or node.assumed:
        return Decision(reason=f"yolopatch does not know what a [{node.kind}] outputs")
    if node.stride is None:
        return Decision(
            reason="its output is pooled to 1x1 (after an [avgpool]); put the operator before the pool"
        )
    following = nodes[index + 1] if index + 1 < len(nodes) else None
    if following is not None and following.head:
        return Decision(
            reason=f"layer {following.index} is a [{following.kind}] head, which must read its prediction convolution"
        )
    if request.rewire == "next" and following is not None and index not in following.sources:
        return Decision(reason=f"--rewire next: the next layer ({following.index}) does not read it")
    if op.channel_multiple is not None or not _keeps_or_projects(op):
        return Decision(reason=f"{op.name} changes its channels by a fixed rule; it cannot be inserted")
    if _fixed_stride(op) not in (None, 1):
        return Decision(
            reason=f"{op.name} has stride {_fixed_stride(op)}: inserted, it would change every later layer's "
            f"size; replace a [convolutional] of stride {_fixed_stride(op)} with it instead"
        )
    problem = op.channel_problem(node.channels, request.values)
    if problem:
        return Decision(reason=problem)
    block = block_for(op, node.channels, node.channels, 1, request.values, request.hidden)
    if matches(block, _found(cfg.sections[index + 1 : index + 1 + block.size])):
        return Decision(reason=f"{op.name} follows it already", already=True)
    return Decision(block=block)


def _replace(cfg: Cfg, nodes: Sequence[Node], index: int, request: Request) -> Decision:
    section, node, op = cfg.sections[index], nodes[index], request.op
    if section.kind == section_type(op):
        block = block_for(
            op,
            _input_channels(cfg, nodes, node) or 0,
            node.channels or 0,
            _own_stride(section),
            request.values,
            request.hidden,
        )
        if matches(block, _found([section])):
            return Decision(reason=f"it is {op.name} already", already=True)
        return Decision(
            reason=f"it is {op.name} already, with other keys; edit them by hand or pick another layer"
        )
    if section.kind != "convolutional":
        return Decision(
            reason=f"{_article(section.kind)} [{section.kind}] is not a convolution; only [convolutional] layers can be replaced "
            "(or insert the operator after it with --insert)"
        )
    heads = [i for i in consumers(nodes, index) if nodes[i].head]
    if heads:
        return Decision(
            reason=f"it is the prediction convolution of the [{nodes[heads[0]].kind}] head at layer {heads[0]}"
        )
    c1, c2, stride = _input_channels(cfg, nodes, node), node.channels, _own_stride(section)
    if c1 is None or c2 is None or node.stride is None:
        return Decision(reason="its input is pooled to 1x1 or of unknown channels")
    if op.channel_multiple is not None or not _keeps_or_projects(op):
        return Decision(reason=f"{op.name} changes its channels by a fixed rule; replace a layer by hand")
    if op.keeps_channels and (c1 != c2 or stride != 1):
        return Decision(
            reason=f"{op.name} keeps channels and size, and this layer turns {c1} channels into {c2} at stride "
            f"{stride}; insert {op.name} after it with --insert"
        )
    fixed = _fixed_stride(op)
    if fixed == 1 and stride != 1:
        return Decision(reason=f"{op.name} keeps the size, and this layer has stride {stride}")
    if fixed is not None and stride != fixed:
        return Decision(reason=f"{op.name} always has stride {fixed}, and this layer has stride {stride}")
    problem = op.channel_problem(c1, request.values)
    if problem:
        return Decision(reason=problem)
    return Decision(block=block_for(op, c1, c2, stride, request.values, request.hidden))


def _fixed_stride(op: Operator) -> Fraction | None:
    """The stride an operator always has (None: set per section, from its `stride=` key)."""
    if op.strided:
        return None
    return op.own_stride if op.own_stride is not None else Fraction(1)


def block_members(cfg: Cfg) -> dict[int, str]:
    """The layers that are part of a native block yolopatch wrote (an SE's four sections, a SAM's two),
    named by what they are ("SE (layers 4-7)")."""
    members: dict[int, str] = {}
    sections = cfg.sections
    for start, section in enumerate(sections):
        if section.kind == "avgpool" and start + 3 < len(sections):
            squeeze, gate = sections[start + 1], sections[start + 2]
            block = se_block(
                gate.number("filters", 0), squeeze.number("filters", 0), squeeze.get("activation") or ""
            )
            name = "SE"
        elif section.kind == "convolutional" and start + 1 < len(sections):
            block, name = sam_block(section.number("filters", 0)), "SAM"
        else:
            continue
        end = start + block.size - 1
        if matches(block, _found(sections[start : end + 1])):
            members.update(dict.fromkeys(range(start, end + 1), f"{name} (layers {start}-{end})"))
    return members


def _found(sections: Sequence[Section]) -> list[tuple[str, dict[str, str]]]:
    return [(s.kind, {k.name: k.text for k in s.keys}) for s in sections]


def _input_channels(cfg: Cfg, nodes: Sequence[Node], node: Node) -> int | None:
    source = node.sources[0]
    return nodes[source].channels if source >= 0 else cfg.net.number("channels", 3)


def _own_stride(section: Section) -> int:
    return max(section.number("stride", 1), 1)


def _keeps_or_projects(op: Operator) -> bool:
    return op.keeps_channels or op.user is None or op.user.rule.channels in ("keep", "conv")


def stride_text(stride: Fraction | None) -> str:
    if stride is None:
        return "1x1"
    return str(stride.numerator) if stride.denominator == 1 else f"1/{stride.denominator}"


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"
