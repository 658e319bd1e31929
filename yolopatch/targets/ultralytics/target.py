"""The ultralytics target (YOLOv8, YOLO11, YOLO12, YOLO26; ultralytics 8.1 to 8.4).

Everything yolopatch knows about this family lives in this package, read from ultralytics' own code across
8.1.0 to 8.4.x (docs/ultralytics-notes.md): parse_model's tables (tables.py); how to find a checkout or the
installed package (package.py); where inject edits (sites.py: a module file of our own under nn/modules/,
its import and `__all__` entry in nn/modules/__init__.py, the name in tasks.py's import and in parse_model's
(c1, c2) collection) and the edits themselves (edits.py); the build child (child.py). This module is the
Target the registry holds.

A model yaml without `anchors:` belongs here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import child
from yolopatch.errors import YolopatchError
from yolopatch.inject import InjectPlan
from yolopatch.operators.spec import Operator
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.ultralytics.package import (
    MODULE,
    Package,
    checkpoint_roots,
    find_package,
    installed_package,
)
from yolopatch.targets.ultralytics.tables import DEFINED, IMPORTS, RULES
from yolopatch.userop.record import find_config

if TYPE_CHECKING:
    from yolopatch.report import Conditions, Latency, ModelReport


class Ultralytics(Target):
    """ultralytics' own model classes build its yamls (installed, or a checkout's), always in a child."""

    name = "ultralytics"
    rules = RULES
    defined = DEFINED
    installable = "ultralytics"
    has_scales = True
    checkout_hint = "PATH/TO/ultralytics"
    times_with_own_code = True
    imports = IMPORTS
    pickle_module = MODULE
    # in cfg/models/v8/yolov8.yaml: 9 SPPF, 8 the last backbone C2f, 7 a stride-2 Conv, 10 nn.Upsample; its
    # scales come from the file name, so the written file names one
    example_layers = {"keep": "9 --insert", "conv": "8", "stride2": "7", "upsample": "10"}
    example_output = "{stem}n-{op}.yaml"

    def stock_yaml(self, where: Any) -> Path | None:
        found = where.root / "cfg" / "models" / "v8" / "yolov8.yaml"
        return found if found.is_file() else None

    def checkpoint_roots(self, where: Any) -> Sequence[Path]:
        return checkpoint_roots(where)

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        """An anchor-free yaml (YOLOv8 and later); the more of its modules ultralytics knows, the surer."""
        if "anchors" in values:
            return 0
        return 1 + sum(m in self.rules.known for m in modules)

    def locate(self, repo: Path) -> Package | None:
        return find_package(repo)

    def installed(self, python: str) -> Package:
        return installed_package(python)

    # the planners are imported when asked for: `apply` and `check` never need them
    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        from yolopatch.targets.ultralytics.edits import inject, with_location_warnings

        return with_location_warnings(inject(where, operators, force), where, python)

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        from yolopatch.targets.ultralytics.revert import revert

        return revert(where, names, force)

    def injected(self, where: Any) -> list[str]:
        from yolopatch.targets.ultralytics.edits import injected_names

        return injected_names(where)

    def check(self, request: CheckRequest) -> ModelReport:
        """Build with ultralytics' own model classes in a child process, with yolopatch's operators
        registered in memory where the package lacks them, and measure; with `export`, also export the model
        as ultralytics' exporter does (yolopatch.build.export); with `fused`, the figures after its fuse()."""
        r = request
        arguments = [_root(r.repo), str(r.path.resolve()), str(r.path), r.scale or "-", str(r.img)]
        arguments += [str(r.batch), r.export or "-", "1" if r.fused else "0"]
        value = child.call(
            _CHILD,
            arguments,
            "building with ultralytics",
            config=find_config(Path.cwd()),
            settings=self.child_settings,
        )
        (result,) = child.reports(value)
        if isinstance(result, YolopatchError):
            raise result
        return result

    def bench(
        self, requests: Sequence[CheckRequest], timing: tuple[str, bool, int]
    ) -> tuple[Conditions, dict[str, Latency]]:
        """Time the yamls with ultralytics' own model classes, all built in one child so they run in turns."""
        from yolopatch.report import Conditions, Latency

        device, half, runs = timing
        first = requests[0]
        pairs = [str(p) for r in requests for p in (r.path.resolve(), r.path)]
        arguments = [
            "--bench",
            _root(first.repo),
            first.scale or "-",
            str(first.img),
            str(first.batch),
            device,
        ]
        arguments += ["1" if half else "0", "1" if first.fused else "0", str(runs), *pairs]
        (result,) = child.call(
            _CHILD,
            arguments,
            "timing with ultralytics",
            config=find_config(Path.cwd()),
            settings=self.child_settings,
        )
        if "error" in result:
            raise YolopatchError(result["error"])
        latencies = {name: Latency(**value) for name, value in result["latencies"].items()}
        return Conditions(**result["conditions"]), latencies

    def train_command(self, model: str) -> str:
        return f"yolo train model={model}"


def _root(repo: Path | None) -> str:
    """The folder holding the ultralytics to build with ("-": the installed one)."""
    if repo is None:
        return "-"
    package = find_package(repo)
    if package is None:
        raise YolopatchError(
            f"{repo}: not an ultralytics checkout: found no ultralytics/nn/tasks.py. Pass the checkout's "
            "root folder, or leave out --repo to use the installed ultralytics."
        )
    return str(package.root.parent.resolve())


_CHILD = "yolopatch.targets.ultralytics.child"
TARGET = Ultralytics()
