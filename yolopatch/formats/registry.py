"""The model formats besides the yaml, and which one a file is in. Adding a format is one package and one
line in FORMATS."""

from __future__ import annotations

from pathlib import Path

from yolopatch.darknet.plugin import FORMAT as DARKNET
from yolopatch.formats.base import ModelFormat

FORMATS: tuple[ModelFormat, ...] = (DARKNET,)


def format_named(name: str) -> ModelFormat:
    return next(fmt for fmt in FORMATS if fmt.name == name)


def format_for(path: Path) -> ModelFormat | None:
    """The format a model file is in (None: a model yaml)."""
    return next((fmt for fmt in FORMATS if fmt.claims(path)), None)
