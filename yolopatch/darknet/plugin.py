"""The darknet `.cfg` format as the commands see it (yolopatch.formats.base.ModelFormat)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from yolopatch.darknet.cfg import parse_cfg
from yolopatch.darknet.decide import Request
from yolopatch.darknet.edit import apply_cfg
from yolopatch.darknet.forms import native_form, native_types, section_type
from yolopatch.darknet.graph import walk
from yolopatch.errors import YolopatchError
from yolopatch.formats.base import (
    FormatChange,
    FormatRequest,
    FormatResult,
    Listing,
    ModelFormat,
    SectionRow,
)
from yolopatch.operators.spec import Operator
from yolopatch.report import ExportReport, ModelReport
from yolopatch.shell import shell_word


class DarknetFormat(ModelFormat):
    name = "darknet .cfg"
    label = "in a .cfg"
    suffixes = (".cfg",)
    unsupported = ("--each", "--into", "--channels", "--scale")

    def layers(self, text: str, name: str) -> Listing:
        cfg = parse_cfg(text, name)
        rows = []
        for section, node in zip(cfg.sections, walk(cfg), strict=True):
            detail = " ".join(
                f"{k.name}={k.text}"
                for k in section.keys
                if k.name in ("filters", "size", "stride", "groups", "group_id", "mask")
            )
            rows.append(
                SectionRow(
                    node.index,
                    node.kind,
                    node.sources,
                    node.channels,
                    node.stride,
                    node.head,
                    node.assumed,
                    detail,
                )
            )
        unknown = sorted({row.kind for row in rows if row.assumed})
        notes = (
            (
                f"{name}: yolopatch assumes what {', '.join(f'[{k}]' for k in unknown)} output(s): channels from "
                "filters= (else the input's), stride from stride=; marked ?.",
            )
            if unknown
            else ()
        )
        return Listing(tuple(rows), notes)

    def apply(self, text: str, layers: str, request: FormatRequest, name: str) -> FormatResult:
        op = request.op
        if op.head or op.backbone is not None:
            what = f"a detection head (its {op.head} row's)" if op.head else "a whole backbone"
            raise YolopatchError(
                f"{name}: {op.name} is {what}, for model yamls; a darknet .cfg writes its own heads and backbone "
                "as sections."
            )
        own = Request(request.op, request.values, request.insert, request.rewire)
        result = apply_cfg(text, layers, own, name)
        notes = list(result.notes)
        if result.changes and result.native:
            notes.append(
                "the new sections are darknet's own layers: darknet trains the result and OpenCV reads it; a "
                "PyTorch codebase that reads cfgs builds only the types it registers (some build an unknown "
                "type as a silent identity), so check it there before training."
            )
        if result.changes and not result.native:
            notes.append(
                f"[{section_type(request.op)}] is no darknet layer: darknet and OpenCV cannot read the result; "
                f"a PyTorch codebase that reads cfgs builds it once {request.op.name} is registered in its "
                "create_modules and its forward."
            )
        return FormatResult(
            original=result.original,
            text=result.text,
            changes=tuple(FormatChange(c.index, c.action, c.old, c.row) for c in result.changes),
            notes=tuple(notes),
            written=request.op.name,
            native=result.native,
            selected=result.selected,
        )

    def operator_form(self, op: Operator, short: bool = False) -> str:
        if op.head or op.backbone is not None:
            return "-" if short else "none: a model yaml's (a darknet .cfg has its own heads and backbone)"
        native = native_form(op)
        if short:
            return "native" if native else f"[{section_type(op)}]"
        if native:
            return f"darknet's own layers: {native} (darknet trains it, OpenCV reads it)"
        return f"a section of its own, [{section_type(op)}]: a PyTorch codebase with {op.name} injected builds it"

    def next_steps(self, result: FormatResult, written: Path) -> str:
        model = shell_word(written)
        if result.native:
            return (
                f"Next: darknet trains {model} as it is (darknet detector train DATA {model}); OpenCV reads it "
                f"(cv2.dnn.readNetFromDarknet); yolopatch layers {model} shows the new layers."
            )
        return (
            f"Next: register {result.written} in the PyTorch codebase that trains {model}: yolopatch inject "
            f"REPO --op {result.written} (a PyTorch codebase that reads cfgs), then yolopatch check {model} --repo "
            "REPO."
        )

    def uses(self, text: str, name: str, op: Operator) -> bool:
        """Whether the cfg holds `op`'s section types (a native form's: SE's [avgpool] and [scale_channels]),
        which a codebase must have registered to build it."""
        kinds = {section.kind for section in parse_cfg(text, name).sections}
        return set(native_types(op)) <= kinds

    def check(
        self,
        text: str,
        name: str,
        img: int,
        batch: int,
        users: Mapping[str, tuple[Operator, type]] | None = None,
    ) -> ModelReport:
        from yolopatch.darknet.measure import check_cfg

        typed = {section_type(op): (op, cls) for op, cls in (users or {}).values()}
        return check_cfg(text, name, img, batch, typed)

    def export(self, text: str, name: str, img: int, batch: int, fmt: str) -> ExportReport:
        if fmt != "opencv":
            return super().export(text, name, img, batch, fmt)
        from yolopatch.darknet.opencv import export_opencv

        return export_opencv(text, name, img, batch)


FORMAT = DarknetFormat()
