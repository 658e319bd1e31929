"""The operator registry: one module per operator in this package, one entry per module here."""

from __future__ import annotations

from collections.abc import Mapping

from yolopatch.errors import YolopatchError
from yolopatch.operators.cbam import CBAM
from yolopatch.operators.coordatt import CoordAtt
from yolopatch.operators.eca import ECA
from yolopatch.operators.involution import INVOLUTION
from yolopatch.operators.sam import SAM
from yolopatch.operators.se import SE
from yolopatch.operators.simam import SimAM
from yolopatch.operators.spec import Operator

OPERATORS: dict[str, Operator] = {
    op.name.lower(): op for op in (INVOLUTION, SE, CBAM, ECA, CoordAtt, SimAM, SAM)
}
DEFAULT = INVOLUTION


def get_operator(name: str, users: Mapping[str, Operator] | None = None) -> Operator:
    """The operator called `name` (case-insensitive): a built-in, or one of the user's own (`users`, keyed
    by lower-cased name); an unknown name lists the known ones."""
    key = name.strip().lower()
    found = OPERATORS.get(key) or (users or {}).get(key)
    if found is None:
        known = ", ".join(op.name for op in [*OPERATORS.values(), *(users or {}).values()])
        raise YolopatchError(
            f"--op {name}: unknown operator; yolopatch knows {known}. Add your own with "
            "`yolopatch ops add FILE.py:CLASS`."
        )
    return found
