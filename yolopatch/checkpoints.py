"""Trained checkpoints that pickle yolopatch's classes: they load only while those classes are injected.

torch.save writes a zip whose data.pkl names each pickled class by module and name, so a byte search of
data.pkl tells which classes a checkpoint needs, without unpickling (or importing) anything.
"""

from __future__ import annotations

import pickletools
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


def in_view(
    roots: Sequence[Path], module: str | None, names: Sequence[str], workdir: Path
) -> dict[Path, list[str]]:
    """The checkpoints a user has in view, each with the `names` it pickles: under the working folder's
    runs/ (where the targets' trainers write) and `roots` (a checkout's own folder), searched through, and
    the working folder's own files (it may be a home folder)."""
    found = checkpoints_needing([workdir / "runs", *roots], module, names, shallow=[workdir])
    return {path: classes_in(path, module, names) for path in found}


def classes_in(path: Path, module: str | None, names: Sequence[str]) -> list[str]:
    """Which of `names` the checkpoint at `path` pickles."""
    return [name for name in names if _pickles(path, module, [name])]


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
    """Whether the checkpoint pickles a class called one of `names` (from a module under `module`, when
    given), read from its class references, never by unpickling."""
    wanted = set(names)
    return any(
        name in wanted and (module is None or found.startswith(module))
        for found, name in _class_references(path)
    )


def _class_references(path: Path) -> set[tuple[str, str]]:
    """(module, name) of every class data.pkl refers to: GLOBAL opcodes (protocols 0-3, torch.save's
    default 2) and STACK_GLOBAL after two strings (protocol 4+). An unreadable file refers to none."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [archive.read(e) for e in archive.namelist() if e.endswith("data.pkl")]
    except (OSError, zipfile.BadZipFile):
        return set()
    found: set[tuple[str, str]] = set()
    for data in pickles:
        strings: list[str] = []
        try:
            for opcode, argument, _ in pickletools.genops(data):
                if opcode.name == "GLOBAL":
                    module, _, name = str(argument).partition(" ")
                    found.add((module, name))
                elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.add((strings[-2], strings[-1]))
                elif isinstance(argument, str):
                    strings.append(argument)
        except ValueError:  # a truncated or foreign pickle: what was read so far
            continue
    return found
