"""`inject`: the target to patch (a checkout, or the installed package), the operators, and the plan that puts
them in or takes them out.

The operators: those `--op` names or the `--for` yaml uses; without either, what the context says (those
already injected, and those that checkpoints and model yamls in view need), else your own recorded ones, else
the default, and the result says which it took and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolopatch.checkpoints import in_view
from yolopatch.commands.apply import apply_head
from yolopatch.commands.heads import prove_head
from yolopatch.commands.operators import known_operator, operator, operators_in, records_read, user_operators
from yolopatch.csp import operators_used, slot_of, variant_name, variant_operator
from yolopatch.edit.options import ApplyOptions
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import read_text
from yolopatch.inject import InjectPlan
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import DEFAULT, OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.shell import shell_word
from yolopatch.targets.base import Target
from yolopatch.targets.registry import (
    csp_blocks,
    import_kinds,
    installable,
    installable_names,
    locate,
    target_for,
)
from yolopatch.userop.source import read_class


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
class Need:
    """An operator a file in view needs: a checkpoint that pickles its class, or a model yaml that uses it."""

    name: str
    by: Path


@dataclass(frozen=True)
class InjectResult:
    target: Target
    where: str  # the checkout or package as the user knows it
    plan: InjectPlan
    operators: Sequence[Operator]
    place: str  # how `inject` names this target in a command line (REPO, or --installed [--python PATH])
    stock: Path | None  # the family's stock yaml in the target, for next-step text
    because: str = ""  # why these operators, when the user named none
    proofs: tuple[str, ...] = ()  # what was proved of each head before writing


def inject(request: InjectRequest) -> InjectResult:
    target, location = _location(request)
    if request.python_given and not target.installable:
        raise OptionError("--python", f"--python only means something for {installable_names()}.")
    chosen = _chosen(request)
    because = ""
    if chosen is None and not request.revert:
        chosen, because = from_context(target, location, Path.cwd())
    plan, operators = _plan(target, location, request, chosen)
    where = location.label if request.repo is None or target.installable else str(request.repo)
    stock = target.stock_yaml(location)
    proofs = () if request.revert else _proofs(target, request, operators, stock)
    return InjectResult(target, where, plan, operators, _place(request), stock, because, proofs)


def _proofs(
    target: Target, request: InjectRequest, operators: Sequence[Operator], stock: Path | None
) -> tuple[str, ...]:
    """Each head proved in the target's stock model, its head swapped, before anything is written."""
    heads = [op for op in operators if op.head]
    if not heads:
        return ()
    names = ", ".join(op.name for op in heads)
    if request.python_given:
        return (f"{names} not proven here: --python names another Python; `check MODEL` in it proves it.",)
    if stock is None:
        return (f"{names} not proven here: found no stock yaml to build it in; `check MODEL` proves it.",)
    text = read_text(stock)
    return tuple(
        prove_head(
            target, op, apply_head(text, op.head, ApplyOptions(op=op), str(stock)).text, stock, request.repo
        )
        for op in heads
    )


def _place(request: InjectRequest) -> str:
    if request.repo is not None:
        return shell_word(request.repo)
    return "--installed" + (f" --python {shell_word(request.python)}" if request.python_given else "")


def _location(request: InjectRequest) -> tuple[Target, Any]:
    """The family and the checkout or package `inject` works on: REPO's, or the installed package's."""
    if request.repo is not None:
        return locate(request.repo)
    return _installed(request)


def _installed(request: InjectRequest) -> tuple[Target, Any]:
    """What --installed patches: the installed family that builds the --for model's format (a .cfg: the
    installable cfg codebase), else the first installable family whose package the Python imports."""
    candidates = installable()
    if request.for_model is not None:
        suffix = request.for_model.suffix.lower()
        candidates = [t for t in candidates if t.model_suffix == suffix] or candidates
    failures: list[YolopatchError] = []
    for target in candidates:
        try:
            return target, target.installed(request.python)
        except YolopatchError as exc:
            failures.append(exc)
    raise failures[0]


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
    """The plan for the target, and the operators it is about. A revert without a choice removes every
    operator."""
    names = [o.name for o in chosen] if chosen else None
    operators = chosen or [known_operator(name) for name in target.injected(location)] or [DEFAULT]
    if request.revert:
        return target.revert(location, names, request.force), operators
    return inject_plan(target, location, operators, request.force, request.python), operators


def from_context(target: Target, location: Any, cwd: Path) -> tuple[list[Operator], str]:
    """No --op, no --for: the operators already injected (injecting again after an upgrade restores them)
    and those the files in view need; else your own recorded ones; else the default. With why."""
    injected = target.injected(location)
    needs = needs_in_view(target, location, cwd)
    names = list(dict.fromkeys([*injected, *(need.name for need in needs)]))
    if names:
        reasons = [f"{', '.join(injected)} already injected"] if injected else []
        reasons += [f"{need.name} needed by {need.by}" for need in needs if need.name not in injected]
        return [known_operator(name) for name in names], f"no --op: {'; '.join(reasons)}"
    users = list(user_operators().values())
    if users:
        return (
            users,
            f"no --op: your own operators ({', '.join(op.name for op in users)}, {records_read(cwd)})",
        )
    return [DEFAULT], f"no --op and nothing in view needs one: {DEFAULT.name}, the default"


def needs_in_view(target: Target, location: Any, cwd: Path) -> list[Need]:
    """What the checkpoints in view (the working folder's runs/ and files, the checkout's) pickle and what
    the target's model yamls in the working folder use, of the operators yolopatch knows."""
    known = [*OPERATORS.values(), *user_operators().values()]
    names = [op.name for op in known] + [variant_name(csp, op.name) for csp in csp_blocks() for op in known]
    held = in_view(target.checkpoint_roots(location), target.pickle_module, names, cwd)
    needs = [Need(name, path) for path, classes in held.items() for name in classes]
    for path in sorted([*cwd.glob("*.yaml"), *cwd.glob("*.yml")]):
        try:
            parsed = parse_model_yaml(read_text(path), str(path))
        except YolopatchError:  # not a model yaml (a dataset's, a config)
            continue
        if target_for(parsed.values) is target:
            used = operators_used({layer.module for layer in parsed.layers}, known, csp_blocks())
            needs += [Need(op.name, path) for op in used]
    return needs


def inject_plan(
    target: Target, location: Any, operators: Sequence[Operator], force: bool, python: str
) -> InjectPlan:
    """The target's plan, once the users' files among the operators are known to import only its code."""
    refuse_foreign_imports(target, operators)
    return target.inject(location, operators, force, python)


def refuse_foreign_imports(target: Target, operators: Sequence[Operator]) -> None:
    """A user's file that imports another family's building blocks has no place in this target: the
    target's own blocks of those names take other arguments."""
    kinds = import_kinds()
    for op in operators:
        if op.user is None or op.user.file.as_posix().startswith("timm:"):
            continue
        source = read_class(op.user.file, op.user.cls, kinds)
        foreign = next((i for i in source.target_imports if i.family != target.imports.name), None)
        if foreign is not None:
            raise YolopatchError(
                f"{source.path}:{foreign.line}: imports {', '.join(foreign.names)} from {foreign.module}, "
                f"{foreign.family}'s code; {target.name} has building blocks of its own whose signatures differ, "
                f"so yolopatch does not point the import at them. Import them from {target.name} in your file "
                f"(then `yolopatch ops add` it again), or inject it into a {foreign.family} target."
            )


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
