"""Where a PyTorch_YOLOv4 checkout is: its root, holding models/models.py (create_modules, Darknet) or a root
models.py; utils/parse_config.py (parse_model_cfg and its `supported` keys) and utils/layers.py beside it.

The root models.py is the ultralytics/yolov3 archive's layout (its last create_modules commit, 6aed6c5), which
PyTorch_YOLOv4's older layout kept file for file: the same three files, dispatches and `supported` list, so
no folder tells them apart and one target handles both. What the archive lacks (darknet's [avgpool],
[scale_channels], [sam], activation=logistic) is read from its create_modules, not assumed from the layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from yolopatch.files import read_text


@dataclass(frozen=True)
class Checkout:
    root: Path
    models: Path

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def import_paths(self) -> tuple[Path, ...]:
        return (self.root,)

    @property
    def layout(self) -> str:
        """The layout, for messages: PyTorch_YOLOv4's, or the archive's root models.py it grew from."""
        return (
            "PyTorch_YOLOv4" if self.models.parent != self.root else "the ultralytics/yolov3 archive layout"
        )

    @property
    def kind(self) -> str:
        if self.models.parent != self.root:
            return "PyTorch_YOLOv4 checkout"
        return "root-models.py checkout (the ultralytics/yolov3 archive layout, PyTorch_YOLOv4's older one)"

    @property
    def parse_config(self) -> Path:
        return self.root / "utils" / "parse_config.py"

    @property
    def module(self) -> str:
        """The module its classes live in: a checkpoint saved with torch.save(model) names ours by it."""
        return "models.models" if self.models.parent != self.root else "models"

    def copies(self) -> list[Path]:
        """The users' modules yolopatch copied in (yolopatch_*.py, beside models.py)."""
        return sorted(self.models.parent.glob("yolopatch_*.py"))


def find_checkout(repo: Path) -> Checkout | None:
    """The checkout at `repo` (its root; its models/ folder names it too)."""
    for root in (repo, repo.parent) if repo.name == "models" else (repo,):
        utils = root / "utils"
        if not ((utils / "parse_config.py").is_file() and (utils / "layers.py").is_file()):
            continue
        for models in (root / "models" / "models.py", root / "models.py"):
            if models.is_file() and "def create_modules(" in read_text(models):
                return Checkout(root.resolve(), models.resolve())
    return None


def read_checkout(checkout: Checkout) -> dict[Path, str]:
    paths = [checkout.models, checkout.parse_config, *checkout.copies()]
    return {path: read_text(path) for path in paths}
