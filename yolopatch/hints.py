"""Next-step text, in one place: what to run after each command, computed from what the command already has
(the target, the files written, the operators), never by reading or running anything."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from yolopatch.operators.spec import Operator
from yolopatch.targets.base import Target

_PLAIN = re.compile(r"[\w@%+=:,./\\*-]+")  # "*": a pattern the shell is meant to expand


def shell_word(value: str | Path) -> str:
    """A path or word as a shell takes it: double-quoted when it holds spaces or other special characters
    (double quotes work in cmd.exe, PowerShell and POSIX shells alike)."""
    text = str(value)
    return text if _PLAIN.fullmatch(text) else f'"{text}"'


def _ops(operators: Sequence[Operator]) -> str:
    names = [op.name.lower() for op in operators]
    return "" if names == ["involution"] else f" --op {','.join(names)}"


def inject_place(target: Target, checkout: Path | None) -> str:
    """How `inject` names where to inject: the checkout at hand, else the family's default."""
    return shell_word(checkout) if checkout is not None else target.inject_argument()


def after_apply(target: Target, written: Path, checkout: Path | None) -> str:
    """After `apply` (one file): inject what the written yaml uses (nothing is written when it is in
    already), then check it, and train it where the family has a one-line trainer."""
    model = shell_word(written)
    check = f"yolopatch check {model}" + (f" --repo {shell_word(checkout)}" if checkout is not None else "")
    train = target.train_command(model)
    return (
        f"Next: yolopatch inject {inject_place(target, checkout)} --for {model}   (once; a no-op when "
        f"injected), then:\n      {check}" + (f"   and   {train}" if train else "")
    )


def after_each(original: Path, pattern: Path) -> str:
    """After `apply --each`: one comparison table of the variants against the original."""
    return (
        f"Next: yolopatch check {shell_word(original)} {shell_word(pattern)}   (one table, the first file "
        "as the reference)"
    )


def after_inject(target: Target, where: str, operators: Sequence[Operator]) -> str:
    """After `inject`: write a yaml that uses the operators, then check it."""
    written = f"MODEL-{operators[0].name.lower()}.yaml"
    check = f"yolopatch check {written}" + ("" if target.installable else f" --repo {shell_word(where)}")
    return (
        f"Next: yolopatch apply {target.example}{_ops(operators[:1]) or ' --op involution'} -o {written}, "
        f"then:\n      {check}"
    )


def after_add(op: Operator) -> str:
    """After `ops add`: use the operator in a yaml, then inject exactly what that yaml uses."""
    where = "--layers 9 --insert" if op.own_stride == 1 else "--layers N"
    return (
        f"Next: yolopatch apply MODEL.yaml {where} --op {op.name} -o MODEL-{op.name.lower()}.yaml   then: "
        f"yolopatch inject REPO --for MODEL-{op.name.lower()}.yaml"
    )
