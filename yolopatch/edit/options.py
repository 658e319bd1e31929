"""What `apply` writes (ApplyOptions) and what it changed (Change): plain data the edit steps share."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from yolopatch.channels import (
    ChannelHints,
)
from yolopatch.operators.registry import DEFAULT
from yolopatch.operators.spec import Operator, resolve_values


@dataclass(frozen=True)
class ApplyOptions:
    """What to write: which operator with which option values (by name; the rest keep their defaults),
    replacing the selected layers or inserting after them."""

    op: Operator = DEFAULT
    values: Mapping[str, Any] = field(default_factory=dict)
    insert: bool = False
    rewire: Literal["all", "next"] = "all"
    hints: ChannelHints = field(default_factory=ChannelHints)  # --channels: what the user states
    scale: str | None = None  # --scale: write for this scale of a `scales:` file only
    users: tuple[Operator, ...] = ()  # the user's own operators (yolopatch.toml), known like the built-ins
    sources: tuple[int, ...] = ()  # --from: the other inputs of an inserted fusion row (input numbering)
    levels: tuple[int, ...] = ()  # --backbone's --levels, as strides (empty: 8, 16, 32)

    @property
    def resolved(self) -> dict[str, Any]:
        return resolve_values(self.op, self.values)

    @property
    def registered(self) -> tuple[Operator, ...]:
        """The user's operators the simulation must know: those recorded, and the one being written."""
        return (*self.users, *([self.op] if self.op.user is not None and self.op not in self.users else []))


@dataclass(frozen=True)
class Change:
    """One layer of the result that yolopatch wrote: `index` numbers the result's layers."""

    index: int
    action: Literal["replaced", "inserted"]
    old: str
    row: str
