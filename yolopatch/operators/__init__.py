"""The operator registry: one module per operator in this package, one entry per module here."""

from __future__ import annotations

from yolopatch.errors import YolopatchError
from yolopatch.operators.cbam import CBAM
from yolopatch.operators.coordatt import CoordAtt
from yolopatch.operators.eca import ECA
from yolopatch.operators.involution import INVOLUTION
from yolopatch.operators.se import SE
from yolopatch.operators.simam import SimAM
from yolopatch.operators.spec import Operator

OPERATORS: dict[str, Operator] = {op.name.lower(): op for op in (INVOLUTION, SE, CBAM, ECA, CoordAtt, SimAM)}
DEFAULT = INVOLUTION


def get_operator(name: str) -> Operator:
    """The operator called `name` (case-insensitive); an unknown name lists the known ones."""
    try:
        return OPERATORS[name.strip().lower()]
    except KeyError:
        known = ", ".join(op.name for op in OPERATORS.values())
        raise YolopatchError(f"--op {name}: unknown operator; yolopatch knows {known}.") from None


def operator_names() -> frozenset[str]:
    """Every operator's yaml and class name."""
    return frozenset(op.name for op in OPERATORS.values())
