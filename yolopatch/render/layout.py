"""Fitting a table to the terminal: columns that wrap or shrink before the table overflows."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    pass


Justify = Literal["left", "right"]


@dataclass(frozen=True)
class Column:
    """A column of a table fitted to the terminal: `drop` says when it gives way (1 first; None never),
    `wrap` that its text is prose that may break between words (names and numbers never break)."""

    name: str
    justify: Justify = "left"
    drop: int | None = None
    wrap: bool = False


def fitted(
    columns: Sequence[Column], rows: Sequence[tuple[Sequence[str], str | None]], width: int, **options
) -> Table:
    """A table that fits `width`: columns give way in their `drop` order until the cells fit unbroken."""

    def lines(text: str) -> list[str]:
        return text.split("\n")

    def need(i: int) -> int:
        """The column's least width: its longest line, or for prose its longest word; at least its header's
        longest line (a header may hold a line break)."""
        cells = [row[i] for row, _ in rows]
        header = max(len(line) for line in lines(columns[i].name))
        if columns[i].wrap:
            return max(max((len(w) for c in cells for w in c.split()), default=1), header)
        return max(max((len(line) for c in cells for line in lines(c)), default=1), header)

    keep = list(range(len(columns)))
    order = sorted((c.drop, i) for i, c in enumerate(columns) if c.drop is not None)
    while sum(need(i) for i in keep) + 3 * len(keep) + 1 > width and order:
        keep.remove(order.pop(0)[1])
    table = Table(**options)
    for i in keep:
        column = columns[i]
        table.add_column(
            column.name,
            justify=column.justify,
            no_wrap=not column.wrap,
            overflow="fold" if column.wrap else "ellipsis",
            min_width=need(i),
        )
    for row_cells, style in rows:
        table.add_row(*(Text(row_cells[i]) for i in keep), style=style)
    return table
