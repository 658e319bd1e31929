"""`inject`: the target to patch (a checkout, or the installed package), the operators (chosen, those a yaml
uses, else those already injected, else the default), and the plan that puts them in or takes them out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolopatch.commands.operators import known_operator, operator, operators_in
from yolopatch.csp import slot_of, variant_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import read_text
from yolopatch.inject import InjectPlan
from yolopatch.operators.registry import DEFAULT
from yolopatch.operators.spec import Operator
from yolopatch.targets.base import Target
from yolopatch.targets.registry import csp_blocks, installable, locate


@dataclass(frozen=True)
class InjectRequest:
    repo: Path | None  # None: the installed package of `python`
    python: str
    python_given: bool
    ops: str | None  # --op NAMES
    for_model: Path | None
    into: str | None
    revert: bool
    force: bool


@dataclass(frozen=True)
class InjectResult:
    target: Target
    where: str  # the checkout or package as the user knows it
    plan: InjectPlan
    operators: Sequence[Operator]


def installable_names() -> str:
    return " or ".join(target.installable for target in installable())


def inject(request: InjectRequest) -> InjectResult:
    target, location = _location(request)
    if request.python_given and not target.installable:
        raise OptionError("--python", f"only means something for {installable_names()}")
    chosen = _chosen(request)
    plan, operators = _plan(target, location, request, chosen)
    where = location.label if request.repo is None or target.installable else str(request.repo)
    return InjectResult(target, where, plan, operators)


def _location(request: InjectRequest) -> tuple[Target, Any]:
    """The family and the checkout or package `inject` works on: REPO's, or the installed package's."""
    if request.repo is not None:
        return locate(request.repo)
    (target, *_) = installable()
    return target, target.installed(request.python)


def _chosen(request: InjectRequest) -> list[Operator] | None:
    if request.for_model is not None:
        chosen: list[Operator] | None = operators_in(request.for_model, read_text(request.for_model))
    elif request.ops:
        chosen = [operator(name) for name in request.ops.split(",")]
    else:
        chosen = None
    if request.into is not None:
        return with_variants(chosen or [DEFAULT], request.into)
    return chosen


def _plan(
    target: Target, location: Any, request: InjectRequest, chosen: Sequence[Operator] | None
) -> tuple[InjectPlan, Sequence[Operator]]:
    """The plan for the target, and the operators it is about: those chosen, else the ones already injected
    (so that injecting again after an upgrade restores them), else the default. A revert without a choice
    removes every operator."""
    names = [o.name for o in chosen] if chosen else None
    operators = chosen or [known_operator(name) for name in target.injected(location)] or [DEFAULT]
    if request.revert:
        return target.revert(location, names, request.force), operators
    return target.inject(location, operators, request.force, request.python), operators


def with_variants(operators: Sequence[Operator], into: str) -> list[Operator]:
    """Each operator, then its `--into` class for the CSP block `into`."""
    blocks = csp_blocks()
    if into not in blocks:
        raise OptionError("--into", f"--into {into}: the CSP blocks are {', '.join(sorted(blocks))}.")
    with_variants = []
    for op in operators:
        slot, why = slot_of(op)
        if slot is None:
            raise YolopatchError(f"--into {into}: {why}; it cannot go inside a bottleneck.")
        with_variants += [op, variant_operator(into, op)]
    return with_variants
