"""Where a checkout of this layout is: its models/ folder with common.py and yolo.py, in a checkout's root
or an unpacked pip package, and which family's it is."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.userop.source import ImportKind

# The checkout layout YOLOv5 made (models/common.py) is YOLOv7's and YOLOv9's too: their imports are one kind.
CHECKOUT_IMPORTS = "YOLOv5/YOLOv7/YOLOv9"
_EXAMPLE = "from models.common import Conv"


@dataclass(frozen=True)
class Layout:
    """What tells the families of this layout apart: the name users know, the import name of its pip
    package (whose yolo.py imports `PACKAGE.models.common`), and classes that only its yolo.py or common.py
    defines (none: any checkout of this layout that no other family claims)."""

    family: str
    package: str
    marks: frozenset[str] = frozenset()
    head: str = ""  # the detection head in its yolo.py that a user's head may subclass (#30)
    keep: str = ""  # what a user's head must keep of it (its outputs' layers)
    loss: str = "utils.loss"  # the module of its ComputeLoss, which train.py makes

    @property
    def imports(self) -> ImportKind:
        """How a user's file imports this layout's code: `models.common` in a checkout, `PACKAGE.models` in the
        pip package. The families of this layout share one kind: their blocks are alike."""
        packaged = tuple(f"{self.package}.{folder}" for folder in ("models", "utils"))
        prefixes = ("models.common", "models.experimental", "models.yolo", "utils.", *packaged)
        if not self.head:
            return ImportKind(CHECKOUT_IMPORTS, prefixes, _EXAMPLE)
        modules = ("models.yolo", f"{self.package}.models.yolo")
        fix = f"{self.family}: `from models.yolo import {self.head}`, and keep its {self.keep}"
        return ImportKind(CHECKOUT_IMPORTS, prefixes, _EXAMPLE, (self.head,), modules, fix)

    def owns(self, models: Path) -> bool:
        if not self.marks:
            return True
        texts = (read_text(models / name) for name in ("yolo.py", "common.py"))
        return any(f"class {mark}(" in text for text in texts for mark in self.marks)


@dataclass(frozen=True)
class Checkout:
    models: Path
    common: Path
    yolo: Path
    layout: Layout

    @property
    def label(self) -> str:
        return str(self.models.parent)

    @property
    def import_paths(self) -> tuple[Path, ...]:
        """The root, for `models.common`; in a pip package's layout also the folder holding the package, for
        the absolute imports inside it (`yolo9.utils`)."""
        tree = ast.parse(read_text(self.yolo))
        absolute = imports_as_package(tree, self.models)
        return (self.models.parent, self.models.parent.parent) if absolute else (self.models.parent,)


def models_folder(repo: Path, package: str) -> Path | None:
    """The models/ folder at `repo`: a checkout's root, its models/ folder, or an unpacked package."""
    for models in (repo / "models", repo, repo / package / "models"):
        if (models / "yolo.py").is_file() and (models / "common.py").is_file():
            return models
    return None


def locate_checkout(repo: Path, layout: Layout) -> Checkout | None:
    """The checkout at `repo` when it is this layout's family (None: not a checkout, or another family's)."""
    models = models_folder(repo, layout.package)
    if models is None or not layout.owns(models):
        return None
    return Checkout(models, models / "common.py", models / "yolo.py", layout)


def find_checkout(repo: Path, layout: Layout) -> Checkout:
    """As locate_checkout, with the reason when there is none."""
    found = locate_checkout(repo, layout)
    if found is not None:
        return found
    if not repo.exists():
        raise YolopatchError(f"{repo}: no such folder.")
    raise YolopatchError(
        f"{repo}: not a {layout.family} checkout: found no models/yolo.py and models/common.py of "
        f"{layout.family}. Pass the checkout's root folder (or its models/ folder)."
    )


def imports_as_package(tree: ast.Module, models: Path) -> bool:
    """Whether yolo.py imports its siblings absolutely (`from yolov5.models.common import *`: the pip
    package layout) rather than as `models.common` from the checkout's root."""
    package = models.parent.name
    return any(
        isinstance(n, ast.ImportFrom) and (n.module or "").startswith(f"{package}.models") for n in tree.body
    )


def read_checkout(checkout: Checkout) -> dict[Path, str]:
    """common.py, yolo.py and the users' modules inject copied into models/ (yolopatch_*.py)."""
    copies = {path: read_text(path) for path in sorted(checkout.models.glob("yolopatch_*.py"))}
    return {checkout.common: read_text(checkout.common), checkout.yolo: read_text(checkout.yolo), **copies}
