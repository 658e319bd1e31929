"""`apply --backbone NAME`: the stock backbone rows that produce the chosen levels become one backbone row
and one `Index` row per level; every later row reads the same levels as before, every `from` renumbered.

Which rows go: from the first row to the end of the deepest level's stage, the stage as long as the one
before it (yolov8's `Conv, C2f` at stride 32 goes, the `SPPF` and `C2PSA` after it stay and read the new
P5 `Index`). A later row may read only a level's output (the last replaced row at that stride): a row
that reads anything else is refused naming it, as is a level the backbone lacks. Text edits at the
composer's spans, as the rest of `apply`: the rows after the backbone keep their text, their `# N`
comments renumbered. Never the forks' fixed `i + 4` shift: each index is recomputed.

Rows before the backbone that pass the image through (a `Silence` row 0, which an auxiliary
branch reads) stay where they are: the backbone row follows them and later rows read them as before.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.channels import Simulation
from yolopatch.edit.options import Change
from yolopatch.edit.rows import Row, comment_edits, flow, source_edits
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.modelyaml import From, Layer, ModelYaml
from yolopatch.operators.spec import Operator
from yolopatch.splice import Edit

_INDEX_COMMENT = re.compile(r"#[ \t]*\d")
DEFAULT_LEVELS = (8, 16, 32)


def parse_levels(text: str | None) -> tuple[int, ...]:
    """`--levels P3,P4,P5` (or strides `8,16,32`): the strides, shallowest first."""
    if not text:
        return DEFAULT_LEVELS
    strides = []
    for term in text.replace(" ", "").split(","):
        match = re.fullmatch(r"[Pp]([1-7])|([0-9]+)", term)
        if match is None:
            raise OptionError(
                "--levels", f"--levels {text}: write levels as P3,P4,P5 (or their strides 8,16,32)."
            )
        strides.append(2 ** int(match.group(1)) if match.group(1) else int(match.group(2)))
    return tuple(sorted(set(strides)))


def level_name(stride: int) -> str:
    return f"P{stride.bit_length() - 1}/{stride}"


@dataclass(frozen=True)
class BackbonePlan:
    rows: list[Row]
    edits: list[Edit]
    changes: list[Change]
    replaced: range  # the stock rows that went
    strides: Mapping[int, Fraction | None]  # kept rows' strides before (new index -> stride), to check


def plan_backbone(
    model: ModelYaml, op: Operator, levels: Sequence[int], values: Mapping[str, Any], sim: Simulation
) -> BackbonePlan:
    spec = op.backbone
    missing = [s for s in levels if spec.position(s) is None]
    if missing:
        raise YolopatchError(
            f"--levels: {op.name} has no output at stride {', '.join(map(str, missing))} (its outputs: {spec})."
        )
    strides = [shape.stride for shape in sim.shapes]
    lead = _image_rows(model, sim)
    end = _last_replaced(model, strides, max(levels))
    taps = _taps(model, strides, lead, end, levels)
    count = 1 + len(levels)
    new_of = {old: old for old in range(lead)}
    new_of.update({old: old - (end + 1) + lead + count for old in range(end + 1, len(model.layers))})
    new_of.update({old: lead + 1 + levels.index(int(strides[old])) for old in taps})  # type: ignore[arg-type]
    kept_rows: list[Row] = [
        (layer.source, layer.number, layer.module, layer.args) for layer in model.layers[:lead]
    ]
    rows, edits = _backbone_rows(model, op, levels, values, lead, end)
    rows = kept_rows + rows
    kept: dict[int, Fraction | None] = {}
    for layer in model.layers[end + 1 :]:
        source = _renumbered(layer, new_of, end, model, taps)
        rows.append((source, layer.number, layer.module, layer.args))
        edits += source_edits(layer, source) + comment_edits(model.text, layer, new_of[layer.index])
        kept[new_of[layer.index]] = strides[layer.index]
    first = model.layers[lead]
    changes = [
        Change(
            lead,
            "replaced",
            f"layers {lead}-{end} ({first.module} ... {model.layers[end].module})",
            _row_text(rows[lead]),
        ),
        *[
            Change(lead + i, "inserted", f"level {level_name(s)}", _row_text(rows[lead + i]))
            for i, s in enumerate(levels, 1)
        ],
    ]
    return BackbonePlan(rows, edits, changes, range(lead, end + 1), kept)


def _image_rows(model: ModelYaml, sim: Simulation) -> int:
    """How many rows at the start pass the image through (a Silence row): stride 1, the image's
    channels."""
    image = sim.shapes[0].c1 if sim.shapes else None
    lead = 0
    for layer, shape in zip(model.layers, sim.shapes, strict=False):
        if layer.section != "backbone" or shape.stride != 1 or image is None or shape.c2 != image:
            break
        lead += 1
    return lead


def _row_text(row: Row) -> str:
    return flow([row[0], row[1], row[2], list(row[3])], "")


def _last_replaced(model: ModelYaml, strides: Sequence[Fraction | None], deepest: int) -> int:
    """The last stock row that goes: the end of the deepest level's stage (as long as the stage before)."""
    backbone = [layer.index for layer in model.layers if layer.section == "backbone"] or [0]
    at = [i for i in backbone if strides[i] == deepest]
    if not at:
        seen = sorted({int(s) for s in strides[: backbone[-1] + 1] if s is not None})
        raise YolopatchError(
            f"{model.name}: the backbone section has no row at stride {deepest} (its strides: {seen}); choose "
            "--levels it has."
        )
    half = [i for i in backbone if strides[i] == Fraction(deepest, 2)]
    stage = at[0] - half[0] if half else 1  # the stage before: from its first row to the deeper one's
    end = min(at[0] + stage - 1, backbone[-1])
    unknown = next((i for i in range(end + 1) if strides[i] is None or strides[i] > deepest), None)  # type: ignore[operator]
    if unknown is not None or at[0] > 0 and any(i not in backbone for i in range(end + 1)):
        raise YolopatchError(
            f"{model.name}: layer {unknown}'s stride is unknown or deeper than {deepest}; yolopatch cannot tell "
            "which rows make the levels."
        )
    return end


def _taps(
    model: ModelYaml, strides: Sequence[Fraction | None], lead: int, end: int, levels: Sequence[int]
) -> set[int]:
    """The replaced rows later rows read: each must be a chosen level's output (the last row at its stride
    before the first deeper one: ELAN-like stages have branch convs at the shallower stride after it)."""
    last: dict[int, int] = {}
    for i in range(end + 1):
        stride = int(strides[i])  # type: ignore[arg-type]
        if not any(s > stride for s in strides[: i + 1]):  # type: ignore[operator]
            last[stride] = i
    taps = set()
    for layer in model.layers[end + 1 :]:
        for old in _absolute(layer):
            if old > end or old < lead:  # a later row, or a row that stays before the backbone
                continue
            stride = int(strides[old])  # type: ignore[arg-type]
            if stride not in levels or last[stride] != old:
                what = (
                    f"stride {stride}, not among --levels {','.join(level_name(s).split('/')[0] for s in levels)}"
                    if stride not in levels
                    else f"not the output of level {level_name(stride)} (layer {last[stride]} is)"
                )
                raise YolopatchError(
                    f"{model.name}: layer {layer.index} reads layer {old} ({model.layers[old].module}, {what}); "
                    "the new backbone gives only its levels' outputs. Choose --levels that include it, or edit "
                    "that row first."
                )
            taps.add(old)
    return taps


def _absolute(layer: Layer) -> list[int]:
    sources = [layer.source] if isinstance(layer.source, int) else list(layer.source)
    return [layer.index + f if f < 0 else f for f in sources]


def _renumbered(layer: Layer, new_of: Mapping[int, int], end: int, model: ModelYaml, taps: set[int]) -> From:
    here = new_of[layer.index]

    def moved(f: int) -> int:
        old = layer.index + f if f < 0 else f
        target = new_of[old]
        return target - here if f < 0 else target

    if isinstance(layer.source, int):
        return moved(layer.source)
    return tuple(moved(f) for f in layer.source)


def _backbone_rows(
    model: ModelYaml, op: Operator, levels: Sequence[int], values: Mapping[str, Any], lead: int, end: int
) -> tuple[list[Row], list[Edit]]:
    """The backbone row and the Index rows, written over rows lead..end in their layout."""
    spec, text = op.backbone, model.text
    deepest = spec.position(max(levels))
    rows: list[Row] = [(-1, 1, op.name, tuple(op.yaml_args(spec.widths[deepest], 1, values)))]
    for stride in levels:
        k = spec.position(stride)
        rows.append((lead, 1, "Index", (spec.widths[k], k)))
    first, last = model.layers[lead], model.layers[end]
    section = next(s for s in model.sections if s.name == first.section)
    style = text[first.args_span.start : first.args_span.end]
    written = [flow([r[0], r[1], r[2], list(r[3])], style) for r in rows]
    comments = _comments(model, first, levels)
    following = model.layers[lead + 1] if len(model.layers) > lead + 1 and end > lead else first
    indent = text[following.line_start : following.row.start]
    if following is first and not section.block_style:
        indent = re.sub(r"\S", " ", indent)
    separator = "" if section.block_style else ","
    joined = "".join(
        f"{row}{separator}{comment}{model.newline}{indent}"
        for row, comment in zip(written[:-1], comments[:-1], strict=True)
    )
    edits = [Edit(first.row.start, last.row.end, joined + written[-1])]
    if last.comment is not None and comments[-1]:
        edits.append(Edit(last.comment.start, last.comment.end, comments[-1].lstrip(" ,")))
    elif comments[-1]:
        edits.append(Edit(last.line_end, last.line_end, comments[-1]))
    return rows, edits


def _comments(model: ModelYaml, first: Layer, levels: Sequence[int]) -> list[str]:
    """`  # 0` for the backbone row and `  # 1-P3/8` for each Index row where the stock rows had index
    comments; `  # P3/8` where they had others; none where they had none."""
    text = model.text
    if first.comment is None:
        return [""] * (1 + len(levels))
    spacing = text[first.row.end : first.comment.start].replace(",", "") or "  "
    numbered = _INDEX_COMMENT.match(text, first.comment.start, first.comment.end) is not None
    head = [f"{spacing}# {first.index}" if numbered else ""]
    return head + [
        f"{spacing}# {i}-{level_name(s)}" if numbered else f"{spacing}# {level_name(s)}"
        for i, s in enumerate(levels, first.index + 1)
    ]


def check_strides(sim: Simulation, plan: BackbonePlan, scale: str, name: str) -> None:
    """Every kept row has the stride it had: the neck reads the same levels."""
    at = f"at scale {scale}: " if scale else ""
    for index, before in plan.strides.items():
        shape = sim.shapes[index]
        if before is not None and shape.stride != before:
            raise YolopatchError(
                f"{name}: {at}layer {index} would be at stride {shape.stride} with the new backbone, not "
                f"{before}; nothing was written."
            )
