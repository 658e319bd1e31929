"""`--layers` for a cfg: layer indices, inclusive ranges and section types, comma-separated.

The grammar is the yaml's, less what a cfg does not have: darknet files have no backbone and head sections,
so those words are refused with what works instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from yolopatch.darknet.cfg import ALIASES, Section
from yolopatch.errors import OptionError
from yolopatch.ranges import index_range

_SECTIONS = ("backbone", "head")


@dataclass(frozen=True)
class CfgSelection:
    """Chosen layer indices in order; `explicit` those named by a bare index (refusals are errors there)."""

    indices: tuple[int, ...]
    explicit: frozenset[int]


def select_sections(spec: str, sections: Sequence[Section]) -> CfgSelection:
    terms = [term.strip() for term in spec.split(",")]
    if not spec.strip() or any(not term for term in terms):
        raise OptionError("--layers", f"--layers {spec!r}: empty term. {_what_works(sections)}")
    chosen: dict[int, None] = {}
    explicit: set[int] = set()
    for term in terms:
        found = _indices(term, sections)
        if term.isdigit():
            explicit.update(found)
        chosen.update(dict.fromkeys(found))
    return CfgSelection(tuple(sorted(chosen)), frozenset(explicit))


def _indices(term: str, sections: Sequence[Section]) -> list[int]:
    numbered = index_range(term, len(sections) - 1)
    if numbered is not None:
        return numbered
    if term.partition(":")[0].lower() in _SECTIONS:
        raise OptionError(
            "--layers",
            f"--layers {term}: a darknet .cfg has no backbone or head sections. {_what_works(sections)}",
        )
    kind = term.strip("[]").lower()
    kind = ALIASES.get(kind, kind)
    found = [section.index for section in sections if section.kind == kind]
    if not found:
        raise OptionError("--layers", f"--layers {term}: matches no layer. {_what_works(sections)}")
    return found


def _what_works(sections: Sequence[Section]) -> str:
    kinds = ", ".join(dict.fromkeys(section.kind for section in sections))
    return (
        f"Use layer indices (0-{len(sections) - 1}), ranges (2-8) or section types ({kinds}); "
        "see them with: yolopatch layers MODEL.cfg"
    )
