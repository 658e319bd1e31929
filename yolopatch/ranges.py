"""`--layers` numbers and ranges (`8`, `2-8`), shared by every model format's selection."""

from __future__ import annotations

import re

from yolopatch.errors import OptionError

_RANGE = re.compile(r"(\d+)\s*-\s*(\d+)")


def index_range(term: str, last: int) -> list[int] | None:
    """The indices `8` or `2-8` names (an OptionError when they leave 0..last); None: `term` is neither."""
    bounds = _RANGE.fullmatch(term)
    if not (term.isdigit() or bounds):
        return None
    low, high = (int(term), int(term)) if not bounds else (int(bounds.group(1)), int(bounds.group(2)))
    if low > high:
        raise OptionError(
            "--layers", f"--layers {term}: a range goes from low to high (--layers {high}-{low})."
        )
    if high > last:
        raise OptionError("--layers", f"--layers {term}: out of range; this model has layers 0-{last}.")
    return list(range(low, high + 1))
