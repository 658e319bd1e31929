"""The Target interface: everything that differs from one family of YOLO codebases to the next.

A family (one package under yolopatch.targets) declares its parse_model tables as data (`Rules`) and
implements the steps that touch its code: whether a yaml is its own, finding a checkout or an installed
package, planning inject and revert, building with its own code for `check`, and the next-step text. The
registry (yolopatch.targets) picks the target; the CLI and the core never name a family.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from yolopatch.inject import InjectPlan
    from yolopatch.operators.spec import Operator
    from yolopatch.report import Conditions, Latency, ModelReport
    from yolopatch.rules import Rules


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


class Target:
    """One family. Subclasses set the attributes and implement the methods their family supports."""

    name: str  # as users write it: "YOLOv5"
    rules: Rules
    defined: frozenset[str] = frozenset()  # classes the family defines: a user's module must not take one
    installable: str = ""  # the package `inject --installed` patches ("": none)
    has_scales: bool = False  # its yamls carry `scales:` (and `check --scale` picks one)
    checkout_hint: str = "PATH/TO/checkout"  # how next-step text names a checkout of this family
    example: str = "MODEL.yaml --layers 8"  # an `apply` that fits the family's stock yamls (next-step text)
    # it claims any checkout of its layout: asked after the families that mark theirs
    fallback: bool = False
    # `check --bench/--fused` build with its own code (else the built-in builder)
    times_with_own_code: bool = False

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

    def train_command(self, model: str) -> str:
        """How the family trains a yaml, for next-step text ("": next-step text names no training)."""
        return ""

    def inject_argument(self) -> str:
        """How `inject` names a target of this family in next-step text: `--installed` or a checkout."""
        return "--installed" if self.installable else self.checkout_hint
