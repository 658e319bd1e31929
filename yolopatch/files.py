"""The one place that reads and writes files: exact text in, atomic all-or-nothing writes out."""

from __future__ import annotations

import contextlib
import difflib
import os
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError


def read_text(path: Path) -> str:
    """The file's exact text: BOM and line endings kept (decoded as UTF-8, no newline translation)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise YolopatchError(f"{path}: no such file.") from None
    except IsADirectoryError:
        raise YolopatchError(f"{path}: is a folder, not a file.") from None
    except OSError as exc:
        raise YolopatchError(f"{path}: cannot read it ({exc.strerror}).") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YolopatchError(
            f"{path}: byte {exc.start} is not UTF-8. Save the file as UTF-8 and run again."
        ) from None


def unified_diff(old: str, new: str, old_name: str, new_name: str) -> str:
    """A unified diff of two texts, each line keeping its own line ending."""
    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), old_name, new_name
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )


@dataclass(frozen=True)
class FileChange:
    """One file's change: `old` None creates it, `new` None deletes it."""

    path: Path
    old: str | None
    new: str | None
    origin: Path | None = None  # where `old` was read, when not `path` (apply writes beside its input)

    @property
    def changed(self) -> bool:
        return self.old != self.new


def change_diff(change: FileChange) -> str:
    """The unified diff of one change (a created or deleted file diffs against nothing)."""
    old_name = str(change.origin or change.path)
    return unified_diff(change.old or "", change.new or "", old_name, str(change.path))


def write_changes(changes: Sequence[FileChange]) -> None:
    """Make every change or none: new texts go to temp files beside their targets first, then all are
    renamed in and deletions done; if a step fails midway, the files already touched get their old bytes."""
    staged: dict[Path, Path | None] = {}
    try:
        for change in changes:
            if change.changed:
                staged[change.path] = None if change.new is None else _stage(change.path, change.new)
        _commit(staged)
    finally:
        for temp in staged.values():
            if temp is not None:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()


def _stage(path: Path, text: str) -> Path:
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else None
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".yolopatch", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(name, mode)
    except OSError as exc:
        raise YolopatchError(f"{path}: cannot write it ({exc.strerror}); nothing was changed.") from None
    return Path(name)


def _commit(staged: Mapping[Path, Path | None]) -> None:
    backups: dict[Path, bytes | None] = {}
    try:
        for path, temp in staged.items():
            backups[path] = path.read_bytes() if path.exists() else None
            if temp is None:
                path.unlink()
            else:
                os.replace(temp, path)
    except OSError as exc:
        _restore(backups)
        raise YolopatchError(f"{path}: cannot write it ({exc.strerror}); nothing was changed.") from None


def _restore(backups: Mapping[Path, bytes | None]) -> None:
    for path, data in backups.items():
        if data is None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        else:
            path.write_bytes(data)
