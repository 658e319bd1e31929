"""`apply` on a cfg: operators replace layers or follow them, as text splices.

Text in, text out. The new sections go in as text; every `layers=`/`from=` index that crosses an edit is
rewritten in place, relative where the file wrote it relative and absolute where absolute, so that each
still names the same layer (with `--rewire all`, the operator takes its layer's place for every reader).
Nothing else changes: comments, blank lines, key order, inline comments, line endings. The result is
parsed again and its graph compared with the intended one before it is returned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from yolopatch.darknet.cfg import Cfg, Section, parse_cfg
from yolopatch.darknet.decide import Decision, Request, block_members, decide, stride_text
from yolopatch.darknet.forms import Block, hidden_activation, native_form, section_type
from yolopatch.darknet.graph import ROUTES, Node, resolve, walk
from yolopatch.darknet.select import select_sections
from yolopatch.errors import YolopatchError
from yolopatch.splice import Edit, newline_of, splice


@dataclass(frozen=True)
class CfgChange:
    """One edited layer: `index` numbers the result's layers (the operator's output section)."""

    index: int
    action: str  # "replaced" or "inserted"
    old: str
    row: str


@dataclass(frozen=True)
class CfgResult:
    original: str
    text: str
    changes: tuple[CfgChange, ...]
    notes: tuple[str, ...]
    native: bool  # every section written is one darknet and OpenCV know
    selected: tuple[int, ...]

    @property
    def changed(self) -> bool:
        return self.text != self.original


@dataclass(frozen=True)
class Placement:
    """Where each layer of the input lands in the result, given the edits (index -> block)."""

    edits: Mapping[int, Block]
    insert: bool
    rewire: str

    def position(self, index: int) -> int:
        """The result's index of input layer `index` (a replaced one: its block's first section)."""
        shift = sum(b.size - (not self.insert) for s, b in self.edits.items() if s < index)
        return index + shift

    def output(self, index: int) -> int:
        """The result's index of the section that gives what layer `index` gives, operator included."""
        block = self.edits[index]
        return self.position(index) + (block.size if self.insert else block.size - 1)

    def reads(self, reader: int, target: int) -> int:
        """The result's index that input layer `reader`'s reference to input layer `target` names."""
        if target not in self.edits:
            return self.position(target)
        if not self.insert or self.rewire == "all" or reader == target + 1:
            return self.output(target)
        return self.position(target)


def apply_cfg(text: str, layers: str, request: Request, name: str = "<cfg>") -> CfgResult:
    """Rewrite the selected layers of a cfg's text; raise YolopatchError when it cannot be done."""
    if request.rewire not in ("all", "next"):
        raise YolopatchError(f"--rewire {request.rewire}: use 'all' or 'next'.")
    cfg = parse_cfg(text, name)
    nodes = walk(cfg)
    activations = [s.get("activation") or "" for s in cfg.sections if s.kind == "convolutional"]
    request = Request(
        request.op, request.values, request.insert, request.rewire, hidden_activation(activations)
    )
    selection = select_sections(layers, cfg.sections)
    edits: dict[int, Block] = {}
    notes: list[str] = []
    for index in selection.indices:
        decision = decide(cfg, nodes, index, request)
        section = cfg.sections[index]
        if decision.block is not None:
            edits[index] = decision.block
        elif decision.already or index not in selection.explicit:
            notes.append(f"layer {index} [{section.written}] left as it is: {decision.reason}.")
        else:
            verb = "insert after" if request.insert else "replace"
            raise YolopatchError(
                f"{cfg.place(section)}: cannot {verb} it with {request.op.name}: {decision.reason}."
            )
    if (
        not edits
        and not any("already" in note or "part of" in note for note in notes)
        and not _patched(cfg, request)
    ):
        raise YolopatchError(f"{name}: --layers {layers} leaves nothing to change. " + " ".join(notes))
    placement = Placement(edits, request.insert, request.rewire)
    new_text = splice(text, [*_block_edits(cfg, placement), *_index_edits(cfg, placement)])
    verify(cfg, nodes, new_text, placement)
    changes = tuple(_change(cfg.sections[i], nodes[i], placement, request) for i in sorted(edits))
    native = all(block.native for block in edits.values())
    return CfgResult(text, new_text, changes, tuple(notes), native, tuple(sorted(edits)))


def _block_edits(cfg: Cfg, placement: Placement) -> list[Edit]:
    newline = newline_of(cfg.text)
    edits = []
    for index, block in placement.edits.items():
        section = cfg.sections[index]
        if placement.insert:
            end = section.span.end
            lead = newline if cfg.text[:end].endswith(("\n", "\r")) else newline + newline
            edits.append(Edit(end, end, lead + block.text(newline)))
        else:
            edits.append(Edit(section.span.start, section.span.end, block.text(newline)))
    return edits


def _index_edits(cfg: Cfg, placement: Placement) -> list[Edit]:
    """Every index whose written value must change for it to name the same layer in the result."""
    edits = []
    for section in cfg.sections:
        if section.index in placement.edits and not placement.insert:
            continue
        here = placement.position(section.index)
        for ref in section.refs():
            target = placement.reads(section.index, resolve(section, ref.value))
            value = target if ref.value >= 0 else target - here
            if value != ref.value:
                edits.append(Edit(ref.span.start, ref.span.end, str(value)))
    return edits


def verify(cfg: Cfg, nodes: Sequence[Node], new_text: str, placement: Placement) -> None:
    """The result parses, every layer of the input reads what it read (moved by the edits) with the same
    channels and stride, and each operator gives its layer's channels and stride."""
    result = walk(parse_cfg(new_text, cfg.name))
    for node in nodes:
        if node.index in placement.edits:
            new = result[placement.output(node.index)]
            if (new.channels, new.stride) != (node.channels, node.stride):
                _mismatch(cfg, node, f"gives {new.channels} channels at stride {new.stride}")
            if placement.insert:
                _same(cfg, node, result[placement.position(node.index)], placement)
            continue
        _same(cfg, node, result[placement.position(node.index)], placement)


def _same(cfg: Cfg, node: Node, new: Node, placement: Placement) -> None:
    first = node.sources[0]
    implicit = cfg.sections[node.index].kind not in ROUTES
    expected = [
        (new.index - 1 if first >= 0 else first) if implicit and i == 0 else placement.reads(node.index, s)
        for i, s in enumerate(node.sources)
    ]
    if new.kind != node.kind or list(new.sources) != expected:
        _mismatch(cfg, node, f"reads {list(new.sources)} in the result, not {expected}")
    if (new.channels, new.stride) != (node.channels, node.stride):
        _mismatch(cfg, node, f"gives {new.channels} channels at stride {new.stride}, not {node.channels}")


def _mismatch(cfg: Cfg, node: Node, what: str) -> None:
    raise YolopatchError(
        f"{cfg.place(cfg.sections[node.index])}: after the edit it {what}; nothing was written. "
        "This is a bug in yolopatch: please report it with the file."
    )


def _change(section: Section, node: Node, placement: Placement, request: Request) -> CfgChange:
    block = placement.edits[section.index]
    first = placement.position(section.index) + (1 if placement.insert else 0)
    last = placement.output(section.index)
    where = f"layer {first}" if first == last else f"layers {first}-{last}"
    written = " + ".join(f"[{kind}]" for kind, _ in block.sections)
    action = "inserted" if placement.insert else "replaced"
    row = f"{request.op.name}: {written} ({where}; {node.channels} ch, stride {stride_text(node.stride)})"
    return CfgChange(last, action, _describe(section), row)


def _describe(section: Section) -> str:
    shown = [
        f"{k.name}={k.text}"
        for k in section.keys
        if k.name in ("filters", "size", "stride", "layers", "from")
    ]
    return " ".join([f"[{section.written}]", *shown])


def _patched(cfg: Cfg, request: Request) -> bool:
    """Whether the file holds the operator already (a type selection may match nothing left to change)."""
    kind = section_type(request.op)
    return any(s.kind == kind for s in cfg.sections) or (
        bool(native_form(request.op))
        and any(name.startswith(f"{request.op.name} ") for name in block_members(cfg).values())
    )


def decisions(cfg: Cfg, request: Request) -> dict[int, Decision]:
    """Every layer's decision (for tests and `layers`): what `apply` would do there."""
    nodes = walk(cfg)
    return {section.index: decide(cfg, nodes, section.index, request) for section in cfg.sections}
