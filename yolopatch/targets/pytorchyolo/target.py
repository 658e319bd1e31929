"""pytorchyolo as a Target: it builds darknet `.cfg` models (no yamls), so it claims no yaml; inject registers
the operators in its models.py (edits.py); `check MODEL.cfg --repo PATH` builds with its own Darknet class in
a child (child.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.targets.base import imported_from
from yolopatch.targets.cfgcode.target import CfgTarget, cfg_rules
from yolopatch.targets.pytorchyolo.edits import IMPORTS
from yolopatch.targets.pytorchyolo.package import MODULE, PACKAGE, Package, find_package


class PytorchyoloTarget(CfgTarget):
    name = "pytorchyolo"
    installable = PACKAGE
    rules = cfg_rules("pytorchyolo")
    imports = IMPORTS
    pickle_module = MODULE
    checkout_hint = "PATH/TO/pytorchyolo"
    edits_module = "yolopatch.targets.pytorchyolo.edits"
    child_module = "yolopatch.targets.pytorchyolo.child"

    def locate(self, repo: Path) -> Package | None:
        return find_package(repo)

    def installed(self, python: str) -> Package:
        """The pytorchyolo that `python` imports outside any checkout (site-packages)."""
        with tempfile.TemporaryDirectory(prefix="yolopatch-") as neutral:
            root = imported_from(python, PACKAGE, Path(neutral))
        found = find_package(root) if root is not None else None
        if found is None:
            raise YolopatchError(
                f"{python}: cannot import pytorchyolo. Install it there (`{python} -m pip install pytorchyolo "
                "--no-deps`), or pass a checkout: `yolopatch inject PATH/TO/pytorchyolo`."
            )
        return found

    def build_root(self, where: Any) -> Path:
        """The folder that holds the package."""
        return where.root.parent  # type: ignore[no-any-return]


TARGET = PytorchyoloTarget()
