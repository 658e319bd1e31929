"""Read a YOLO model yaml into layers that remember where each of their parts sits in the text.

ruamel.yaml's round-trip dump loses comments and spacing in these files, so nothing here dumps YAML:
the composer gives every node's exact character span, and edits are splices at those spans.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from yolopatch.errors import YolopatchError

SECTIONS = ("backbone", "head")
From = int | tuple[int, ...]

# What may follow a layer row on its own line: a comma, the closing bracket, a comment.
_ROW_TAIL = re.compile(r"[ \t]*(?P<comma>,)?[ \t]*(?P<close>\][ \t]*)?(?P<comment>#[^\r\n]*)?")


@dataclass(frozen=True)
class Span:
    """Character offsets [start, end) into the file text (a BOM, if any, is offset 0)."""

    start: int
    end: int


@dataclass(frozen=True)
class Layer:
    """One `[from, number, module, args]` row, with the spans an edit may touch."""

    index: int
    section: str
    source: From
    number: int
    module: str
    args: tuple[Any, ...]
    args_text: str  # the args list as written, for listings
    row: Span
    from_spans: tuple[Span, ...]
    number_span: Span
    module_span: Span
    args_span: Span
    line_start: int
    line_end: int
    comment: Span | None
    ends_line: bool
    has_comma: bool


@dataclass(frozen=True)
class Section:
    name: str
    block_style: bool
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class ModelYaml:
    """A parsed model yaml: its text, its top-level values and its layers in parse_model's order."""

    name: str
    text: str
    values: dict[str, Any]
    sections: tuple[Section, ...]

    @property
    def layers(self) -> tuple[Layer, ...]:
        return tuple(layer for section in self.sections for layer in section.layers)

    @property
    def newline(self) -> str:
        return "\r\n" if "\r\n" in self.text else "\n"

    def logical_rows(self) -> list[tuple[From, int, str, tuple[Any, ...]]]:
        """What parse_model would read: one (from, number, module, args) per layer."""
        return [(layer.source, layer.number, layer.module, layer.args) for layer in self.layers]


@functools.lru_cache(maxsize=64)
def parse_model_yaml(text: str, name: str = "<yaml>") -> ModelYaml:
    """Parse a model yaml's text; raise YolopatchError naming line:column for anything unusable.

    Cached: one command reads the same text several times (the family, the simulation, the build), and the
    result is frozen (its `values` are shared: never mutate them). Errors are not cached.
    """
    _reject_tab_indentation(text, name)
    yaml = YAML(typ="safe", pure=True)
    try:
        root = yaml.compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        context = ""
        if exc.context and exc.context_mark and exc.context_mark is not mark:
            context = f"; {exc.context} that starts at line {exc.context_mark.line + 1}"
        raise YolopatchError(
            f"{where}: not valid YAML ({exc.problem or exc.context}{context}). Fix the syntax there."
        ) from None
    except YAMLError as exc:
        raise YolopatchError(f"{name}: not valid YAML ({exc}).") from None
    if not isinstance(root, MappingNode):
        raise YolopatchError(f"{name}: expected a YOLO model yaml (a mapping with backbone: and head:).")
    values = yaml.constructor.construct_document(root)
    nodes = {key.value: value for key, value in root.value if isinstance(key, ScalarNode)}
    missing = [s for s in SECTIONS if s not in nodes]
    if missing:
        raise YolopatchError(
            f"{name}: no {' or '.join(missing)} section; a YOLO model yaml has backbone: and head: "
            "lists of [from, number, module, args] rows."
        )
    sections, index = [], 0
    for section_name in SECTIONS:
        section = _read_section(text, name, section_name, nodes[section_name], yaml, index)
        sections.append(section)
        index += len(section.layers)
    return ModelYaml(name=name, text=text, values=values, sections=tuple(sections))


def line_col(text: str, offset: int) -> str:
    """1-based 'line:column' of an offset, for messages."""
    line = text.count("\n", 0, offset) + 1
    column = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return f"{line}:{column}"


def _reject_tab_indentation(text: str, name: str) -> None:
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent and line.strip():
            column = indent.index("\t") + 1
            raise YolopatchError(
                f"{name}:{number}:{column}: a tab is used for indentation; YAML allows only spaces. "
                "Replace the tab with spaces."
            )


def _read_section(text: str, name: str, section: str, node: Node, yaml: YAML, first: int) -> Section:
    where = f"{name}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"
    if not isinstance(node, SequenceNode):
        raise YolopatchError(f"{where}: {section}: must be a list of [from, number, module, args] rows.")
    _reject_anchors(node, name, section)
    layers = tuple(
        _read_layer(text, name, section, row, yaml, first + position)
        for position, row in enumerate(node.value)
    )
    return Section(name=section, block_style=not node.flow_style, layers=layers)


def _reject_anchors(node: Node, name: str, section: str) -> None:
    if getattr(node, "anchor", None):
        mark = node.start_mark
        raise YolopatchError(
            f"{name}:{mark.line + 1}:{mark.column + 1}: {section}: uses a YAML anchor or alias (&/*); "
            "yolopatch edits rows in place and cannot follow aliases. Write the rows out in full."
        )
    if isinstance(node, SequenceNode):
        for child in node.value:
            _reject_anchors(child, name, section)


def _read_layer(text: str, name: str, section: str, row: Node, yaml: YAML, index: int) -> Layer:
    where = f"{name}:{row.start_mark.line + 1}:{row.start_mark.column + 1}"
    if not isinstance(row, SequenceNode) or len(row.value) != 4:
        raise YolopatchError(
            f"{where}: layer {index} in {section}: is not a [from, number, module, args] row."
        )
    source_node, number_node, module_node, args_node = row.value
    source = yaml.constructor.construct_object(source_node, deep=True)
    number = yaml.constructor.construct_object(number_node, deep=True)
    module = yaml.constructor.construct_object(module_node, deep=True)
    args = yaml.constructor.construct_object(args_node, deep=True)
    if (
        not _is_from(source)
        or not isinstance(number, int)
        or not isinstance(module, str)
        or not isinstance(args, list)
    ):
        raise YolopatchError(
            f"{where}: layer {index} in {section}: expected [from, number, module, args] with an int or list "
            f"of ints as from, an int number, a module name and an args list; "
            f"got {[source, number, module, args]}."
        )
    from_nodes = source_node.value if isinstance(source_node, SequenceNode) else [source_node]
    start, end = row.start_mark.index, row.end_mark.index
    line_start = text.rfind("\n", 0, start) + 1
    line_end = _line_end(text, end)
    tail = _ROW_TAIL.match(text, end)
    assert tail is not None  # every part of the pattern is optional
    ends_line = tail.end() == line_end
    comment = (
        Span(tail.start("comment"), tail.end("comment")) if ends_line and tail.group("comment") else None
    )
    return Layer(
        index=index,
        section=section,
        source=tuple(source) if isinstance(source, list) else source,
        number=number,
        module=module,
        args=tuple(args),
        args_text=text[args_node.start_mark.index : args_node.end_mark.index],
        row=Span(start, end),
        from_spans=tuple(_span(n) for n in from_nodes),
        number_span=_span(number_node),
        module_span=_span(module_node),
        args_span=_span(args_node),
        line_start=line_start,
        line_end=line_end,
        comment=comment,
        ends_line=ends_line,
        has_comma=bool(tail.group("comma")),
    )


def _is_from(value: Any) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    return is_int or (
        isinstance(value, list)
        and bool(value)
        and all(_is_from(v) and not isinstance(v, list) for v in value)
    )


def _line_end(text: str, offset: int) -> int:
    end = text.find("\n", offset)
    end = len(text) if end < 0 else end
    return end - 1 if end > 0 and text[end - 1] == "\r" else end


def _span(node: Node) -> Span:
    return Span(node.start_mark.index, node.end_mark.index)
