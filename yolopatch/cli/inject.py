"""`yolopatch inject`: its options, one call into commands.inject, the plan's lines."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from yolopatch.cli.common import (
    err,
    errors,
    exclusive,
    finish,
    notes,
    out,
)
from yolopatch.targets.registry import installable_names


def inject(
    repo: Annotated[
        Path | None,
        typer.Argument(
            metavar="REPO",
            help="A checkout (its root folder, or its models/ folder), or an unpacked package; the family is "
            "found from its files.",
        ),
    ] = None,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed",
            help=f"Patch the package that Python imports (site-packages): {installable_names()}.",
        ),
    ] = False,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            metavar="PATH",
            help="The Python of the environment you train in (default: the one running yolopatch).",
        ),
    ] = None,
    op: Annotated[
        str | None,
        typer.Option(
            "--op",
            metavar="NAMES",
            help="Operators to inject, comma-separated (default: those already injected, else involution).",
        ),
    ] = None,
    for_model: Annotated[
        Path | None,
        typer.Option(
            "--for", metavar="MODEL.yaml", help="Inject exactly the operators this yaml uses.", dir_okay=False
        ),
    ] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Print unified diffs and write nothing.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 unless fully injected.")
    ] = False,
    revert: Annotated[
        bool,
        typer.Option(
            "--revert", help="Remove exactly what yolopatch added (all operators, or those of --op)."
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Disable a foreign class of the same name and inject ours; replace or revert a block you edited.",
        ),
    ] = False,
    into: Annotated[
        str | None,
        typer.Option(
            "--into",
            metavar="C3|C2f|C3k2",
            help="Also the CSP block with the operators inside its bottlenecks (C2f_CBAM), as `apply --into` writes.",
        ),
    ] = None,
) -> None:
    """Put operators into a checkout or an installed package: each class and its registration in parse_model.

    The first line printed names the layout found. A second run writes nothing; --revert removes exactly what yolopatch added, byte for byte.
    """
    from yolopatch.commands.inject import InjectRequest
    from yolopatch.commands.inject import inject as plan_inject
    from yolopatch.hints import after_inject, after_revert

    exclusive(("--diff", diff), ("--check", check))
    exclusive(("--op", op is not None), ("--for", for_model is not None))
    exclusive(("REPO", repo is not None), ("--installed", installed))
    if repo is None and not installed:
        raise typer.BadParameter(
            f"give a checkout, or --installed for the installed {installable_names()}", param_hint="REPO"
        )
    request = InjectRequest(
        repo, python or sys.executable, python is not None, op, for_model, into, revert, force
    )
    with errors():
        result = plan_inject(request)
        plan = result.plan
        out.print(f"{result.where}: {plan.flavour}", markup=False)  # the plan's lines follow on stdout
        notes([result.because] if result.because else [])
        notes(result.proofs)
        for warning in plan.warnings:
            err.print(f"warning: {warning}", markup=False)
        if plan.needed:
            err.print(after_revert(result.place, plan.needed), markup=False)
        if not plan.changed:
            done = "nothing to revert" if revert else "already injected"
            err.print(f"{result.where}: {done}; nothing written.")
            return
        finish(plan.changes, diff, check, f"{result.where}: {'injected' if revert else 'not fully injected'}")
    for action in plan.actions:
        out.print(f"  {action}", markup=False)
    if not revert:
        out.print(
            after_inject(result.target, result.place, result.operators, for_model, result.stock), markup=False
        )
