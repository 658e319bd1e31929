"""The Target of a codebase that builds darknet `.cfg` models: it claims no yaml; inject, revert and what is
injected come from its edits module; `check MODEL.cfg --repo PATH` builds with its own Darknet class in its
child. A family sets where those live and how its checkout or package is found."""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import child
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.operators.spec import Operator
from yolopatch.rules import Rules
from yolopatch.targets.base import CheckRequest, Target

if TYPE_CHECKING:
    from yolopatch.inject import InjectPlan
    from yolopatch.report import ModelReport


def cfg_rules(family: str) -> Rules:
    """A cfg codebase has no parse_model: no yaml module is its own."""
    return Rules(
        family=family,
        channel_modules=frozenset(),
        strided=frozenset(),
        upsampling=frozenset(),
        heads=frozenset(),
        passthrough=frozenset(),
        not_replaceable={},
    )


class CfgTarget(Target):
    model_suffix = ".cfg"
    example_output = "{stem}-{op}.cfg"
    edits_module: str  # its inject, revert and injected_names (imported when asked: apply never needs them)
    child_module: str  # its `check --repo` child: ROOT IMG BATCH MODEL.cfg NAME OUT.json

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        return 0  # its models are darknet cfgs, never yamls

    def build_root(self, where: Any) -> Path:
        """The folder the child puts first on sys.path to import the codebase."""
        raise NotImplementedError

    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        return importlib.import_module(self.edits_module).inject(where, operators, force)  # type: ignore[no-any-return]

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        return importlib.import_module(self.edits_module).revert(where, names, force)  # type: ignore[no-any-return]

    def injected(self, where: Any) -> list[str]:
        return importlib.import_module(self.edits_module).injected_names(where)  # type: ignore[no-any-return]

    def checkpoint_roots(self, where: Any) -> Sequence[Path]:
        return (self.build_root(where),)

    def check(self, request: CheckRequest) -> ModelReport:
        """The cfg built with the codebase's own Darknet class in a child: forward, backward, its parameters
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
        where = self.locate(request.repo)
        if where is None:
            raise YolopatchError(f"{request.repo}: holds no {self.name} code ({self.checkout_hint}).")
        root = self.build_root(where)
        arguments = [str(root.resolve()), str(request.img), str(request.batch)]
        arguments += [str(request.path.resolve()), str(request.path)]
        value = child.call(self.child_module, arguments, f"{root}: building with its Darknet")
        (report,) = child.reports(value)
        if isinstance(report, YolopatchError):
            raise report
        return report  # type: ignore[no-any-return]
