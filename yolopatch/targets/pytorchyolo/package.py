"""Where a pytorchyolo package lies: the package folder (a checkout's, an installed one in site-packages, an
unpacked wheel), named by itself or by the folder that holds it, and the files inject reads there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolopatch.files import read_text
from yolopatch.targets.base import PackageFolder

PACKAGE = "pytorchyolo"
# the module its classes live in: a checkpoint saved with torch.save(model) names our classes by it
MODULE = f"{PACKAGE}.models"


@dataclass(frozen=True)
class Package(PackageFolder):
    """A `pytorchyolo` package folder: models.py (create_modules, Darknet) and utils/parse_config.py."""

    @property
    def models(self) -> Path:
        return self.root / "models.py"

    @property
    def kind(self) -> str:
        git = any((folder / ".git").exists() for folder in (self.root.parent, *self.root.parent.parents[:2]))
        return "checkout" if git else "package folder"

    def copies(self) -> list[Path]:
        """The users' modules yolopatch copied in (yolopatch_*.py)."""
        return sorted(self.root.glob("yolopatch_*.py"))


def is_package(folder: Path) -> bool:
    return (
        folder.name == PACKAGE
        and (folder / "models.py").is_file()
        and (folder / "utils" / "parse_config.py").is_file()
    )


def find_package(repo: Path) -> Package | None:
    """The package at `repo`: the package folder itself, or the folder holding it (a checkout's root,
    site-packages)."""
    for folder in (repo, repo / PACKAGE):
        if is_package(folder):
            return Package(folder.resolve())
    return None


def read_package(package: Package) -> dict[Path, str]:
    texts = {package.models: read_text(package.models)}
    texts |= {path: read_text(path) for path in package.copies()}
    return texts
