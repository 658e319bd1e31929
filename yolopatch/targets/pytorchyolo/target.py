"""pytorchyolo as a Target: it builds darknet `.cfg` models (no yamls), so it claims no yaml; inject registers
the operators in its models.py (edits.py); `check MODEL.cfg --repo PATH` builds with its own Darknet class in
a child (child.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import child
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.operators.spec import Operator
from yolopatch.rules import Rules
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.pytorchyolo.edits import IMPORTS
from yolopatch.targets.pytorchyolo.package import MODULE, PACKAGE, Package, find_package

if TYPE_CHECKING:
    from yolopatch.inject import InjectPlan
    from yolopatch.report import ModelReport

_CHILD = "yolopatch.targets.pytorchyolo.child"

RULES = Rules(
    family="pytorchyolo",
    channel_modules=frozenset(),
    strided=frozenset(),
    upsampling=frozenset(),
    heads=frozenset(),
    passthrough=frozenset(),
    not_replaceable={},
)


class PytorchyoloTarget(Target):
    name = "pytorchyolo"
    rules = RULES
    imports = IMPORTS
    model_suffix = ".cfg"
    pickle_module = MODULE
    checkout_hint = "PATH/TO/pytorchyolo"
    example_output = "{stem}-{op}.cfg"

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        return 0  # its models are darknet cfgs, never yamls

    def locate(self, repo: Path) -> Package | None:
        return find_package(repo)

    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        from yolopatch.targets.pytorchyolo.edits import inject

        return inject(where, operators, force)

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        from yolopatch.targets.pytorchyolo.edits import revert

        return revert(where, names, force)

    def injected(self, where: Any) -> list[str]:
        from yolopatch.targets.pytorchyolo.edits import injected_names

        return injected_names(where)

    def checkpoint_roots(self, where: Any) -> Sequence[Path]:
        return (where.root.parent,)

    def check(self, request: CheckRequest) -> ModelReport:
        """The cfg built with the package's own Darknet class in a child: forward, backward, its parameters
        per layer (`check MODEL.cfg --repo PATH`)."""
        if request.repo is None:
            raise YolopatchError(f"{request.path}: {self.name} builds cfgs with --repo only.")
        for option, on in (
            ("--scale", request.scale),
            ("--export", request.export),
            ("--fused", request.fused),
        ):
            if on:
                raise OptionError(option, f"{option} is not supported with a {self.name} --repo.")
        package = find_package(request.repo)
        if package is None:
            raise YolopatchError(f"{request.repo}: holds no {PACKAGE} package.")
        arguments = [str(package.root.parent.resolve()), str(request.img), str(request.batch)]
        arguments += [str(request.path.resolve()), str(request.path)]
        value = child.call(_CHILD, arguments, f"{package.root}: building with its Darknet")
        (report,) = child.reports(value)
        if isinstance(report, YolopatchError):
            raise report
        return report  # type: ignore[no-any-return]


TARGET = PytorchyoloTarget()
