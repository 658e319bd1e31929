"""The `--layers` grammar: indices, ranges, sections, module names and SECTION:MODULE, comma-separated."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from yolopatch.errors import OptionError
from yolopatch.modelyaml import SECTIONS, Layer
from yolopatch.ranges import index_range


@dataclass(frozen=True)
class Selection:
    """Chosen layer indices in order; `explicit` holds those named by a bare index (errors, not skips);
    `unmatched` the module terms that matched nothing but were allowed to."""

    indices: tuple[int, ...]
    explicit: frozenset[int]
    unmatched: tuple[str, ...] = ()


def select_layers(spec: str, layers: Sequence[Layer], absent_ok: Collection[str] = ()) -> Selection:
    """Resolve `spec`; a module term in `absent_ok` may match nothing (it was patched away already)."""
    terms = [term.strip() for term in spec.split(",")]
    if not spec.strip() or any(not term for term in terms):
        raise OptionError("--layers", f"--layers {spec!r}: empty term. {_what_exists(layers)}")
    chosen: dict[int, None] = {}
    explicit: set[int] = set()
    unmatched = []
    for term in terms:
        if term.rpartition(":")[2] in absent_ok and not any(
            layer.module == term.rpartition(":")[2] for layer in layers
        ):
            unmatched.append(term)
            continue
        indices = _indices_for(term, layers)
        if term.isdigit():
            explicit.update(indices)
        chosen.update(dict.fromkeys(indices))
    return Selection(indices=tuple(sorted(chosen)), explicit=frozenset(explicit), unmatched=tuple(unmatched))


def _indices_for(term: str, layers: Sequence[Layer]) -> list[int]:
    numbered = index_range(term, len(layers) - 1)
    if numbered is not None:
        return numbered
    section, _, module = term.rpartition(":") if ":" in term else ("", "", term)
    if term in SECTIONS:
        section, module = term, ""
    if section and section not in SECTIONS:
        raise OptionError("--layers", f"--layers {term}: unknown section {section!r}; use backbone or head.")
    found = [
        layer.index
        for layer in layers
        if (not section or layer.section == section) and (not module or layer.module == module)
    ]
    if not found:
        raise OptionError("--layers", f"--layers {term}: matches no layer. {_what_exists(layers, section)}")
    return found


def _what_exists(layers: Sequence[Layer], section: str = "") -> str:
    names = list(dict.fromkeys(layer.module for layer in layers if not section or layer.section == section))
    where = f"{section} modules" if section else "Modules"
    return (
        f"Layers are 0-{len(layers) - 1}; {where}: {', '.join(names)}; sections: backbone, head. "
        "See them with: yolopatch layers MODEL.yaml"
    )
