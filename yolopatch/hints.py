"""Next-step text, in one place: what to run after each command, computed from what the command already has
(the target, the files written, the operators), never by reading or running anything."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yolopatch.operators.spec import Operator
from yolopatch.shell import shell_word
from yolopatch.targets.base import Target


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


def after_inject(
    target: Target, place: str, operators: Sequence[Operator], model: Path | None, stock: Path | None
) -> str:
    """After `inject`: check the yaml it was for (`--for`), or write one from the family's stock yaml (`stock`,
    found in the target) at a layer that fits the operator, then check it."""
    repo = "" if place.startswith("--installed") else f" --repo {place}"
    if model is not None:
        train = target.train_command(shell_word(model))
        return f"Next: yolopatch check {shell_word(model)}{repo}" + (f"   and   {train}" if train else "")
    op = operators[0]
    source = shell_word(stock) if stock is not None else f"MODEL{target.model_suffix}"
    written = target.example_output.format(stem=stock.stem if stock else "MODEL", op=op.name.lower())
    name = op.name if op.user is not None else op.name.lower()
    edit = f"--layers {target.example_layers[kind_of(op)]} --op {name}"
    if op.head:  # the head row, its from and args kept
        edit = f"--layers {op.head} --op {name}"
    if op.backbone is not None:  # its rows replace the stock backbone's
        edit = f"--backbone {name}"
    return f"Next: yolopatch apply {source} {edit} -o {written}, then:\n      yolopatch check {written}{repo}"


def kind_of(op: Operator) -> str:
    """Which of a family's example layers fits the operator: keep, conv, stride2 or upsample."""
    if op.upsamples:
        return "upsample"
    if op.own_stride == 2:
        return "stride2"
    return "keep" if op.keeps_channels else "conv"


def after_revert(place: str, needed: Sequence[str]) -> str:
    """After a `--revert` that leaves checkpoints unloadable: the inject that loads them again."""
    return f"To load them again: yolopatch inject {place} --op {','.join(needed)}"


def after_add(
    op: Operator, model: Path | None = None, place: str | None = None, target: Target | None = None
) -> str:
    """After `ops add`: use the operator in a yaml (`model`: one at hand, of `target`, else a placeholder),
    then inject exactly what that yaml uses (`place`: the checkout at hand or --installed, else a
    placeholder)."""
    where = "--layers 9 --insert" if op.own_stride == 1 and not op.channel_multiple else "--layers N"
    if target is not None and not op.channel_multiple:
        where = f"--layers {target.example_layers[kind_of(op)]}"
    if op.fusion is not None:
        where = "--layers Concat"  # every Concat row the rules allow; the others are named and left
    source = shell_word(model) if model is not None else "MODEL.yaml"
    written = f"{model.stem if model is not None else 'MODEL'}-{op.name.lower()}.yaml"
    if op.head:
        where = f"--layers {op.head}"  # the head row, its from and args kept
    if op.backbone is not None:  # its rows replace the stock backbone's: no --layers
        return (
            f"Next: yolopatch apply {source} --backbone {op.name} -o {written}   then: "
            f"yolopatch inject {place or 'REPO'} --for {written}"
        )
    return (
        f"Next: yolopatch apply {source} {where} --op {op.name} -o {written}   then: "
        f"yolopatch inject {place or 'REPO'} --for {written}"
    )
