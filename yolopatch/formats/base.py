"""The ModelFormat interface: what a model format other than the yaml supplies to the commands.

A format (one package, e.g. yolopatch.darknet) reads its own files, lists their layers, edits them and says
what comes next; the registry (yolopatch.formats.registry) picks it by the file; the commands decide, and
never name a format.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch.errors import YolopatchError

if TYPE_CHECKING:
    from yolopatch.operators.spec import Operator
    from yolopatch.report import ExportReport, ModelReport


@dataclass(frozen=True)
class SectionRow:
    """One layer of a listing: what it is, what it reads (absolute; -1 the input image), what it gives.
    `stride` None: pooled to 1x1; `channels` None: unknown; `assumed`: a type the format does not define."""

    index: int
    kind: str
    sources: tuple[int, ...]
    channels: int | None
    stride: Fraction | None
    head: bool = False
    assumed: bool = False
    detail: str = ""


@dataclass(frozen=True)
class Listing:
    rows: tuple[SectionRow, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class FormatRequest:
    """One `apply`: the operator and its option values, replace or insert, and the rewiring."""

    op: Operator
    values: Mapping[str, Any]
    insert: bool = False
    rewire: str = "all"


@dataclass(frozen=True)
class FormatChange:
    """One edited layer: `index` numbers the result's layers."""

    index: int
    action: str
    old: str
    row: str


@dataclass(frozen=True)
class FormatResult:
    original: str
    text: str
    changes: tuple[FormatChange, ...]
    notes: tuple[str, ...]
    written: str  # the operator's name
    native: bool  # the format's own tools read every section written
    selected: tuple[int, ...] = ()

    @property
    def changed(self) -> bool:
        return self.text != self.original


class ModelFormat:
    """One model format. Subclasses set the attributes and implement the methods."""

    name: str  # as users call the files: "darknet .cfg"
    label: str  # a short column header for what it writes per operator
    suffixes: tuple[str, ...]
    unsupported: tuple[str, ...] = ()  # apply options that mean nothing for it

    def claims(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    def layers(self, text: str, name: str) -> Listing:
        raise NotImplementedError

    def apply(self, text: str, layers: str, request: FormatRequest, name: str) -> FormatResult:
        raise NotImplementedError

    def operator_form(self, op: Operator, short: bool = False) -> str:
        """How the format writes `op` (for `ops`; `short`: a word or two for a table cell)."""
        raise NotImplementedError

    def next_steps(self, result: FormatResult, written: Path) -> str:
        raise NotImplementedError

    def uses(self, text: str, name: str, op: Operator) -> bool:
        """Whether the model holds `op` (the user's operators it uses are built in a child)."""
        raise NotImplementedError

    def check(
        self,
        text: str,
        name: str,
        img: int,
        batch: int,
        users: Mapping[str, tuple[Operator, type]] | None = None,
    ) -> ModelReport:
        """Build with the format's own built-in builder (torch is imported here, and only here), run it
        forward and backward, and measure it. `users`: the user's operators it uses, by section type, with
        their adapter classes (given only in the child that imports the user's files)."""
        raise NotImplementedError

    def export(self, text: str, name: str, img: int, batch: int, fmt: str) -> ExportReport:
        """`check --export FMT`: the model run by another tool that reads this format, compared with the
        built-in builder."""
        raise YolopatchError(f"--export {fmt} is not supported for a {self.name} file ({name}) yet.")
