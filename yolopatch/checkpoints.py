"""Trained checkpoints that pickle yolopatch's classes: they load only while those classes are injected.

torch.save writes a zip whose data.pkl names each pickled class by module and name, so a byte search of
data.pkl tells which classes a checkpoint needs, without unpickling (or importing) anything.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

# folders a training run does not write to, and that can be large
_SKIPPED = ("site-packages", "node_modules", "__pycache__")


def checkpoints_needing(
    roots: Sequence[Path], module: str | None, names: Sequence[str], shallow: Sequence[Path] = ()
) -> list[Path]:
    """The .pt files under `roots` (and directly in the `shallow` folders) that pickle one of `names`
    (from `module`, when given)."""
    seen: dict[Path, None] = {}
    candidates = [
        *(p for root in roots for p in _checkpoints(root)),
        *(p for f in shallow for p in _direct(f)),
    ]
    for path in candidates:
        if path.resolve() not in seen and _pickles(path, module, names):
            seen[path.resolve()] = None
    return list(seen)


def listing(found: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in found[:3])
    return shown + (f" and {len(found) - 3} more" if len(found) > 3 else "")


def _checkpoints(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for path in root.rglob("*.pt"):
        parts = path.parts[len(root.parts) :]
        if not any(part.startswith(".") or part in _SKIPPED for part in parts):
            yield path


def _direct(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.pt")) if folder.is_dir() else []


def _pickles(path: Path, module: str | None, names: Sequence[str]) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [archive.read(e) for e in archive.namelist() if e.endswith("data.pkl")]
    except (OSError, zipfile.BadZipFile):
        return False
    return any(
        (module is None or module.encode() in data) and any(name.encode() in data for name in names)
        for data in pickles
    )
