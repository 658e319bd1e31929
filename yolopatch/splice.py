"""Text edits as (start, end, replacement) splices: the one way yolopatch changes a file's text."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    text: str


def splice(text: str, edits: Sequence[Edit]) -> str:
    """Apply non-overlapping edits, given as offsets into the original text."""
    pieces, position = [], 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < position:
            raise AssertionError(f"overlapping edits at {edit.start}")
        pieces += [text[position : edit.start], edit.text]
        position = edit.end
    return "".join(pieces) + text[position:]


def newline_of(text: str) -> str:
    return "\r\n" if "\r\n" in text else "\n"
