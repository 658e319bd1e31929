"""The Involution source in templates/involution.py: one text for `inject` and for the built-in builder."""

from __future__ import annotations

from pathlib import Path

_HERE = Path(__file__).resolve().parent
# Inside an installed wheel the templates sit in the package; in a source checkout beside it.
_CANDIDATES = (_HERE / "templates" / "involution.py", _HERE.parent / "templates" / "involution.py")


def template_path() -> Path:
    return next(path for path in _CANDIDATES if path.exists())


def template_source() -> str:
    return template_path().read_text(encoding="utf-8")
