"""The tables of model formats other than the yaml: a file's layers, and what `apply` changed in it."""

from __future__ import annotations

from fractions import Fraction

from rich.table import Table

from yolopatch.formats.base import Listing, SectionRow
from yolopatch.render.layout import Column, fitted


def sections_table(listing: Listing, width: int = 100) -> Table:
    """One row per layer: index, type, what it reads (absolute), output channels and stride, heads marked;
    fitted to `width` (the keys, then what it reads, give way)."""
    columns = [
        Column("#", "right"),
        Column("type"),
        Column("reads", "right", drop=2, wrap=True),
        Column("out ch", "right"),
        Column("stride", "right"),
        Column("keys", drop=1, wrap=True),
    ]
    rows = [(_cells(row), "bold" if row.head else None) for row in listing.rows]
    assumed = any(row.assumed for row in listing.rows)
    return fitted(
        columns,
        rows,
        width,
        title="Layers (use these indices with --layers; input = the image)",
        title_justify="left",
        caption=("? an assumption: a type yolopatch does not know (see the note)" if assumed else None),
        caption_justify="left",
    )


def _cells(row: SectionRow) -> list[str]:
    mark = "?" if row.assumed else ""
    return [
        str(row.index),
        f"{row.kind} (head)" if row.head else row.kind,
        ", ".join("input" if s < 0 else str(s) for s in row.sources),
        "-" if row.channels is None else f"{row.channels}{mark}",
        _stride(row.stride) + ("" if row.stride is None else mark),
        row.detail,
    ]


def _stride(stride: Fraction | None) -> str:
    if stride is None:
        return "1x1"
    return str(stride.numerator) if stride.denominator == 1 else f"1/{stride.denominator}"
