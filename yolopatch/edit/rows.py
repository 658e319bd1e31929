"""`apply`'s text edits: the rows written or inserted (indices renumbered, `# N` comments kept true),
as splices at the composer's spans, and the check that the edited text parses back as planned."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from yolopatch.channels import (
    Geometry,
    simulate,
)
from yolopatch.edit.decide import place_of, row_stride
from yolopatch.edit.options import ApplyOptions, Change
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import From, Layer, ModelYaml, Span, parse_model_yaml
from yolopatch.operators.spec import Operator
from yolopatch.rules import Rules
from yolopatch.splice import Edit, splice

_INDEX_COMMENT = re.compile(r"#[ \t]*(\d+)(?!\d)")

Row = tuple[From, int, str, tuple[Any, ...]]


def plan_replace(
    model: ModelYaml,
    targets: Mapping[int, int | None],
    op: Operator,
    values: Mapping[str, Any],
    rules: Rules,
) -> tuple[list[Row], list[Edit], list[Change]]:
    """Each target row becomes the operator: its channels from the row's first argument (or `targets`' for
    a row whose first argument is not a channel count, nn.Upsample), its stride the row's; a block that
    repeats keeps the row's number."""
    rows = model.logical_rows()
    edits, changes = [], []
    for index, argument in targets.items():
        layer = model.layers[index]
        args = op.yaml_args(layer.args[0] if argument is None else argument, row_stride(layer, rules), values)
        number = layer.number if op.repeats else 1
        rows[index] = (layer.source, number, op.name, tuple(args))
        args_text = flow(args, model.text[layer.args_span.start : layer.args_span.end])
        row_edits = [
            *([] if op.repeats else [Edit(layer.number_span.start, layer.number_span.end, "1")]),
            Edit(layer.module_span.start, layer.module_span.end, op.name),
            Edit(layer.args_span.start, layer.args_span.end, args_text),
        ]
        edits += row_edits
        row_text = splice_span(model.text, layer.row, row_edits)
        changes.append(Change(index=index, action="replaced", old=layer.module, row=row_text))
    return rows, edits, changes


def plan_insert(
    model: ModelYaml, targets: Mapping[int, int | None], options: ApplyOptions, values: Mapping[str, Any]
) -> tuple[list[Row], list[Edit], list[Change]]:
    chosen = set(targets)
    new_index = new_indices(len(model.layers), chosen)
    rows: list[Row] = []
    edits: list[Edit] = []
    changes: list[Change] = []
    for layer in model.layers:
        source = rewire_source(layer, chosen, new_index, options.rewire)
        rows.append((source, layer.number, layer.module, layer.args))
        edits += source_edits(layer, source)
        edits += comment_edits(model.text, layer, new_index[layer.index])
        if layer.index in chosen:
            args = options.op.yaml_args(targets[layer.index], 1, values)  # type: ignore[arg-type]
            # a fusion row reads the layer before it and --from's, renumbered like every `from`
            read = [-1, *(new_index[s] for s in options.sources)] if options.sources else -1
            rows.append((tuple(read) if isinstance(read, list) else read, 1, options.op.name, tuple(args)))
            row_edits, row_text = insert_row(
                model, layer, options.op.name, args, new_index[layer.index] + 1, read
            )
            edits += row_edits
            changes.append(
                Change(
                    index=new_index[layer.index] + 1,
                    action="inserted",
                    old=f"after {layer.module}",
                    row=row_text,
                )
            )
    return rows, edits, changes


def new_indices(count: int, chosen: set[int]) -> list[int]:
    """Where each original layer lands once an operator follows every chosen one."""
    indices, shift = [], 0
    for index in range(count):
        indices.append(index + shift)
        shift += index in chosen
    return indices


def rewire_source(layer: Layer, chosen: set[int], new_index: list[int], rewire: str) -> From:
    def target(old: int) -> int:
        takes_new = old in chosen and (rewire == "all" or layer.index == old + 1)
        return new_index[old] + 1 if takes_new else new_index[old]

    def moved(f: int) -> int:
        if f == -1:
            return -1  # the previous row: the new operator when one was inserted right before, as intended
        if f < 0:
            return target(layer.index + f) - new_index[layer.index]
        return target(f)

    if isinstance(layer.source, int):
        return moved(layer.source)
    return tuple(moved(f) for f in layer.source)


def source_edits(layer: Layer, source: From) -> list[Edit]:
    old = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    new = [source] if isinstance(source, int) else list(source)
    return [
        Edit(span.start, span.end, str(b))
        for span, a, b in zip(layer.from_spans, old, new, strict=True)
        if a != b
    ]


def comment_edits(text: str, layer: Layer, new_index: int) -> list[Edit]:
    if layer.comment is None or new_index == layer.index:
        return []
    match = _INDEX_COMMENT.match(text, layer.comment.start, layer.comment.end)
    if not match or int(match.group(1)) != layer.index:
        return []
    return [Edit(match.start(1), match.end(1), str(new_index))]


def insert_row(
    model: ModelYaml, layer: Layer, name: str, args: list[Any], index: int, read: int | list[int] = -1
) -> tuple[list[Edit], str]:
    text = model.text
    row_text = flow([read, 1, name, args], text[layer.row.start : layer.row.end])
    section = next(s for s in model.sections if s.name == layer.section)
    if not layer.ends_line or closes_on_line(text, layer):
        if section.block_style:
            raise YolopatchError(
                f"{place_of(model, layer)}: cannot insert after a row that does not end its line."
            )
        return [Edit(layer.row.end, layer.row.end, f", {row_text}")], row_text
    prefix = text[layer.line_start : layer.row.start]
    indent = prefix if section.block_style else re.sub(r"\S", " ", prefix)
    comma = "," if layer.has_comma and not section.block_style else ""
    comment = new_comment(model, layer, index)
    line = f"{model.newline}{indent}{row_text}{comma}{comment}"
    edits = [Edit(layer.line_end, layer.line_end, line)]
    if not layer.has_comma and not section.block_style:
        # the last row had no trailing comma; now that a row follows it needs one
        edits.insert(0, Edit(layer.row.end, layer.row.end, ","))
    return edits, row_text


def closes_on_line(text: str, layer: Layer) -> bool:
    return "]" in text[layer.row.end : layer.comment.start if layer.comment else layer.line_end]


def new_comment(model: ModelYaml, layer: Layer, index: int) -> str:
    """`# N` after the new row when its neighbours carry index comments, spaced like them."""
    section = next(s for s in model.sections if s.name == layer.section)
    position = section.layers.index(layer)
    neighbours = [layer] + list(section.layers[position + 1 : position + 2])
    if not any(
        n.comment and _INDEX_COMMENT.match(model.text, n.comment.start, n.comment.end) for n in neighbours
    ):
        return ""
    spaced = next((n for n in neighbours if n.comment), layer)
    before = model.text[spaced.row.end : spaced.comment.start].replace(",", "") if spaced.comment else ""
    return f"{before or '  '}# {index}"


def flow(values: list[Any], style_of: str) -> str:
    """A flow list written the way `style_of` writes its lists: `[a, b]`, `[a,b]` or `[ a, b ]`."""
    spaced = style_of.startswith("[ ")
    separator = ", " if ", " in style_of or "," not in style_of else ","

    def write(value: Any) -> str:
        if isinstance(value, list):
            inner = separator.join(write(v) for v in value)
            return f"[ {inner} ]" if spaced else f"[{inner}]"
        return str(value)

    return write(values)


def splice_span(text: str, span: Span, edits: Sequence[Edit]) -> str:
    """The text of one span after the edits inside it."""
    shifted = [Edit(e.start - span.start, e.end - span.start, e.text) for e in edits]
    return splice(text[span.start : span.end], shifted)


def verify(new_text: str, rows: list[Row], geos: Mapping[str, Geometry], name: str) -> ModelYaml:
    """Parse the result again: it must mean exactly the planned rows."""
    reparsed = parse_model_yaml(new_text, name)
    if reparsed.logical_rows() != rows:
        raise YolopatchError(
            f"{name}: internal error: the edited text did not parse back as planned; nothing was written. "
            "Please report this with the yaml file."
        )
    for geo in geos.values():
        simulate(rows, geo, name)
    return reparsed


def non_ascii_warning(model: ModelYaml, rules: Rules) -> list[str]:
    """Non-ASCII text inside rows, for the families that do not read yamls as UTF-8 (Rules.non_ascii)."""
    text = model.text
    rows = [layer.index for layer in model.layers if not text[layer.row.start : layer.row.end].isascii()]
    if not rows or not rules.non_ascii:
        return []
    return [f"layers {rows} hold non-ASCII text inside their rows; {rules.non_ascii}."]
