"""The Target interface: everything that differs from one family of YOLO codebases to the next.

A family (one package under yolopatch.targets) declares its parse_model tables as data (`Rules`) and
implements the steps that touch its code: whether a yaml is its own, finding a checkout or an installed
package, planning inject and revert, building with its own code for `check`, and the next-step text. The
registry (yolopatch.targets) picks the target; the CLI and the core never name a family.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from yolopatch.child import Settings
from yolopatch.errors import YolopatchError

if TYPE_CHECKING:
    from yolopatch.inject import InjectPlan
    from yolopatch.operators.spec import Operator
    from yolopatch.report import Conditions, Latency, ModelReport
    from yolopatch.rules import Rules
    from yolopatch.userop.source import ImportKind


@dataclass(frozen=True)
class Builtin:
    """What the built-in builder needs to build a family's yamls without its code: its blocks by yaml name
    (`modules`, imported only when a model is built), parse_model's "insert n" collection, the heads that
    get their inputs' channels appended (`anchor_heads`: an int anchors argument becomes that many anchor
    pairs per level, as parse_model writes it), and head arguments parse_model scales like c2."""

    modules: Mapping[str, Any]
    repeat_inside: frozenset[str]
    heads: frozenset[str]
    anchor_heads: frozenset[str] = frozenset()
    scaled_head_argument: Mapping[str, int] = field(default_factory=dict)
    input_first: frozenset[str] = frozenset()  # modules parse_model gives [c1, *args] (YOLOv9's CBLinear)
    bottleneck: Any = None  # the block `--into` classes fill (None: the family has no CSP blocks built in)
    # what the family's fuse() does beyond Conv + BatchNorm, which the built-in builder's does not ("": none)
    fuse_differs: str = ""


class Location(Protocol):
    """A checkout or a package of a target, as `inject` and `check --repo` use it."""

    @property
    def label(self) -> str: ...

    @property
    def import_paths(self) -> tuple[Path, ...]:
        """The folders a child puts first on sys.path to import the family's code as this copy has it."""
        ...


@dataclass(frozen=True)
class PackageFolder:
    """A Location that is one package folder: its parent goes first on a child's sys.path."""

    root: Path

    @property
    def label(self) -> str:
        return str(self.root)

    @property
    def import_paths(self) -> tuple[Path, ...]:
        return (self.root.parent,)


def imported_from(python: str, package: str, cwd: Path) -> Path | None:
    """Where `import PACKAGE` finds the package for `python` started in `cwd` (found, not imported)."""
    locate = (
        f"import importlib.util as u; s = u.find_spec({package!r}); "
        "print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')"
    )
    try:
        process = subprocess.run(
            [python, "-c", locate], capture_output=True, text=True, cwd=cwd, timeout=60, env=dict(os.environ)
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise YolopatchError(
            f"--python {python}: cannot run it ({exc}). Pass the path of a Python interpreter."
        ) from None
    if process.returncode != 0:
        tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
        raise YolopatchError(
            f"--python {python}: failed to run ({tail}). Pass the path of a Python interpreter."
        )
    found = process.stdout.strip()
    return Path(found) if found else None


@dataclass(frozen=True)
class CheckRequest:
    """One `check` of one yaml: what the user asked for, and the user's own operators the yaml uses."""

    path: Path
    text: str
    repo: Path | None
    scale: str | None
    img: int
    batch: int
    export: str | None = None
    fused: bool = False
    users: Sequence[Operator] = ()


# What every family's code reads from the environment: YOLOv5 (YOLOV5_CONFIG_DIR) and ultralytics
# (YOLO_CONFIG_DIR) keep their settings in a folder "Ultralytics" under the platform's settings home, and recent
# YOLOv5 releases import ultralytics, so each family's child gets both, with ultralytics' hub and pip installs off
# (it reads both switches as the words "True"/"False").
CHILD_SETTINGS = Settings(
    folders={"YOLOV5_CONFIG_DIR": "Ultralytics", "YOLO_CONFIG_DIR": "Ultralytics"},
    fixed={"YOLO_OFFLINE": "True", "YOLO_AUTOINSTALL": "False"},
)


class Target:
    """One family. Subclasses set the attributes and implement the methods their family supports."""

    name: str  # as users write it: "YOLOv5"
    rules: Rules
    defined: frozenset[str] = frozenset()  # classes the family defines: a user's module must not take one
    installable: str = ""  # the package `inject --installed` patches ("": none)
    has_scales: bool = False  # its yamls carry `scales:` (and `check --scale` picks one)
    model_suffix: str = ".yaml"  # the model files it builds (".cfg": darknet's, read by yolopatch.formats)
    checkout_hint: str = "PATH/TO/checkout"  # how next-step text names a checkout of this family
    # next-step text: the `--layers` of an apply that fits the family's stock yaml, by the operator's kind
    # (keep: keeps channels and size; conv: changes channels; stride2; upsample), and the file it writes
    example_layers: Mapping[str, str] = {
        "keep": "9 --insert",
        "conv": "8",
        "stride2": "7",
        "upsample": "nn.Upsample",
    }
    example_output: str = "{stem}-{op}.yaml"
    # it claims any checkout of its layout: asked after the families that mark theirs
    fallback: bool = False
    # `check --bench/--fused` build with its own code (else the built-in builder)
    times_with_own_code: bool = False
    imports: ImportKind  # how a user's file imports the family's building blocks
    child_settings: Settings = CHILD_SETTINGS  # what its code reads from the environment in a child

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        """How strongly a parsed yaml (its top-level values, its rows' module names) is this family's: 0 is
        not at all; the registry takes the highest."""
        raise NotImplementedError

    def locate(self, repo: Path) -> Location | None:
        """The checkout or package at `repo` when it is this family's (None: it is not)."""
        raise NotImplementedError

    def installed(self, python: str) -> Location:
        raise NotImplementedError

    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        raise NotImplementedError

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        raise NotImplementedError

    def injected(self, where: Any) -> list[str]:
        raise NotImplementedError

    # the module checkpoints name yolopatch's classes by, as a prefix (None: where the user's file lives)
    pickle_module: str | None = None

    def checkpoint_roots(self, where: Any) -> Sequence[Path]:
        """Where this checkout's own trained weights may lie, besides the working folder's runs/."""
        return ()

    def builtin(self) -> Builtin | None:
        """The built-in builder's tables (None: yamls of this family build only with its own code)."""
        return None

    def check(self, request: CheckRequest) -> ModelReport:
        raise NotImplementedError

    def check_many(self, requests: Sequence[CheckRequest]) -> list[ModelReport]:
        """Several yamls; a family that builds with its own code in a child may build them in one."""
        return [self.check(request) for request in requests]

    def bench(
        self, requests: Sequence[CheckRequest], timing: tuple[str, bool, int]
    ) -> tuple[Conditions, dict[str, Latency]] | None:
        """Time the yamls with the family's own code (None: the built-in builder times them)."""
        return None

    def stock_yaml(self, where: Any) -> Path | None:
        """The family's stock model yaml in this checkout or package (None: it has none)."""
        return None

    def train_command(self, model: str) -> str:
        """How the family trains a yaml, for next-step text ("": next-step text names no training)."""
        return ""

    def inject_argument(self) -> str:
        """How `inject` names a target of this family in next-step text: `--installed` or a checkout."""
        return "--installed" if self.installable else self.checkout_hint
