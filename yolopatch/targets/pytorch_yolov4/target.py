"""PyTorch_YOLOv4 as a Target: it builds darknet `.cfg` models (no yamls), so it claims no yaml; inject
registers the operators in its models/models.py and utils/parse_config.py (edits.py); `check MODEL.cfg --repo
PATH` builds with its own Darknet class in a child (child.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from yolopatch.targets.cfgcode.target import CfgTarget, cfg_rules
from yolopatch.targets.pytorch_yolov4.edits import FAMILY, IMPORTS
from yolopatch.targets.pytorch_yolov4.package import Checkout, find_checkout


class PytorchYolov4Target(CfgTarget):
    name = FAMILY
    rules = cfg_rules(FAMILY)
    imports = IMPORTS
    pickle_module = "models.models"
    checkout_hint = "PATH/TO/PyTorch_YOLOv4"
    edits_module = "yolopatch.targets.pytorch_yolov4.edits"
    child_module = "yolopatch.targets.pytorch_yolov4.child"

    def locate(self, repo: Path) -> Checkout | None:
        return find_checkout(repo)

    def build_root(self, where: Any) -> Path:
        return where.root  # type: ignore[no-any-return]


TARGET = PytorchYolov4Target()
