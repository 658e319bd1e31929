"""Words for a command line that yolopatch prints (next steps, hints): they must run as printed."""

from __future__ import annotations

import re
from pathlib import Path

_PLAIN = re.compile(r"[\w@%+=:,./\\*-]+")  # "*": a pattern the shell is meant to expand


def shell_word(value: str | Path) -> str:
    """A path or word as a shell takes it: double-quoted when it holds spaces or other special characters
    (double quotes work in cmd.exe, PowerShell and POSIX shells alike)."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) else f'"{text}"'
