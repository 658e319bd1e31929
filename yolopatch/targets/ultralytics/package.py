"""The ultralytics package inject edits and where it lies: a checkout's, or the one a Python imports
(site-packages, or an editable install), with the files inject reads and our module file's name in it.
"""

from __future__ import annotations

import ast
import tempfile
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.targets.base import PackageFolder, imported_from

# our module file in nn/modules/, the module ultralytics imports it as (checkpoints pickle our classes under
# it), and what a new one starts with
MODULE_FILE = "yolopatch.py"
MODULE = "ultralytics.nn.modules.yolopatch"
HEADER = (
    '"""Operators added by yolopatch, registered in nn/modules/__init__.py and nn/tasks.py.\n'
    "\n"
    "`yolopatch inject --revert` removes them, their registration and this file.\n"
    '"""\n'
)


@dataclass(frozen=True)
class Package(PackageFolder):
    """An `ultralytics` package folder: a git checkout's, or an installed one (site-packages)."""

    installed: bool = False

    @property
    def kind(self) -> str:
        """What the user pointed at, in their words: an installed package, a git checkout, or a folder that
        holds the package (an unpacked wheel or a copy) and is neither."""
        if self.installed:
            return "installed package"
        if any((folder / ".git").exists() for folder in (self.root.parent, *self.root.parent.parents[:2])):
            return "checkout"
        return "package folder"

    @property
    def tasks(self) -> Path:
        return self.root / "nn" / "tasks.py"

    @property
    def init(self) -> Path:
        return self.root / "nn" / "modules" / "__init__.py"

    @property
    def module(self) -> Path:
        return self.root / "nn" / "modules" / MODULE_FILE

    @property
    def version_file(self) -> Path:
        return self.root / "__init__.py"

    @property
    def siblings(self) -> list[Path]:
        """ultralytics' own module files: the classes they define are never shadowed."""
        folder = self.root / "nn" / "modules"
        return sorted(
            p
            for p in folder.glob("*.py")
            if p.name not in ("__init__.py", MODULE_FILE) and not p.name.startswith("yolopatch_")
        )

    @property
    def copies(self) -> list[Path]:
        """The users' modules inject copied into nn/modules/ (yolopatch_*.py)."""
        return sorted((self.root / "nn" / "modules").glob("yolopatch_*.py"))


def is_package(root: Path) -> bool:
    return (root / "nn" / "tasks.py").is_file() and (root / "nn" / "modules" / "__init__.py").is_file()


def find_package(repo: Path) -> Package | None:
    """The ultralytics package of a checkout (its root or the package folder itself); None: not one."""
    for root in (repo / "ultralytics", repo):
        if is_package(root):
            return Package(root)
    return None


def read_package(package: Package) -> dict[Path, str | None]:
    """The texts inject reads: tasks.py, nn/modules/__init__.py, our module file (None when absent) and
    ultralytics' own module files."""
    texts: dict[Path, str | None] = {
        package.tasks: read_text(package.tasks),
        package.init: read_text(package.init),
    }
    texts[package.module] = read_text(package.module) if package.module.is_file() else None
    texts.update({path: read_text(path) for path in [*package.siblings, *package.copies]})
    if package.version_file.is_file():
        texts[package.version_file] = read_text(package.version_file)
    return texts


def package_version(init_text: str) -> str:
    """`__version__` as ultralytics/__init__.py assigns it ("" when it is not a plain string)."""
    for node in ast.parse(init_text.lstrip("\ufeff")).body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets)
            and isinstance(node.value, ast.Constant)
        ):
            return str(node.value.value)
    return ""


# --- finding the package a Python imports -------------------------------------------------------------------


def installed_package(python: str) -> Package:
    """The ultralytics that `python` imports outside any checkout (site-packages, or an editable install)."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as neutral:
        root = imported_from(python, "ultralytics", Path(neutral))
    if root is None or not is_package(root):
        raise YolopatchError(
            f"{python}: cannot import ultralytics. Install it there (`{python} -m pip install ultralytics`), "
            "or pass a checkout: `yolopatch inject PATH/TO/ultralytics`."
        )
    return Package(root, installed=True)


def location_warnings(package: Package, python: str) -> tuple[str, ...]:
    """Say when the patched copy is not the one `import ultralytics` gives (the edit would have no effect)."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as neutral:
        elsewhere = imported_from(python, "ultralytics", Path(neutral))
    here = imported_from(python, "ultralytics", Path.cwd())
    patched = package.root.resolve()
    if package.installed:
        if here is not None and here.resolve() != patched:
            return (
                f"in this folder, {python} imports ultralytics from {here} (a checkout), not the installed copy "
                f"patched here; scripts run from this folder will not see the operators.",
            )
        return ()
    if elsewhere is not None and elsewhere.resolve() == patched:
        return ()
    imported = f"imports ultralytics from {elsewhere}" if elsewhere else "cannot import ultralytics"
    return (
        f"{python} {imported}, not from this checkout ({package.root}): `yolo train` and scripts outside "
        f"{package.root.parent} will not see the operators. Install the checkout with "
        f"`pip install -e {package.root.parent}`, or run `yolopatch inject --installed`.",
    )


def checkpoint_roots(package: Package) -> list[Path]:
    """Where a checkout's own trained weights may lie: its folder (an installed package has none)."""
    return [] if package.kind == "installed package" else [package.root.parent]
