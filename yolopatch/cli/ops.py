"""`yolopatch ops`: list, show, add and remove operators."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from yolopatch.cli.common import (
    errors,
    exclusive,
    name_values,
    out,
)
from yolopatch.targets.registry import installable_names


class _OpsGroup(TyperGroup):
    """`yolopatch ops NAME` shows one operator: a word that is not a subcommand is a NAME."""

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[Any, Any, list[str]]:
        if args and args[0] not in self.commands and not args[0].startswith("-"):
            return "show", self.commands["show"], args
        return super().resolve_command(ctx, args)


ops_app = typer.Typer(
    cls=_OpsGroup,
    invoke_without_command=True,
    help="List the operators (built-in and your own); `ops NAME` shows one; `ops add FILE.py:CLASS` learns "
    "your own module; `ops remove NAME` forgets it.",
    epilog="Example: yolopatch ops cbam",
)


@ops_app.callback(invoke_without_command=True)
def ops_command(ctx: typer.Context) -> None:
    """List the operators yolopatch can add: paper, yaml arguments, channel rule, parameters."""
    from yolopatch.render.operators import operators_table

    if ctx.invoked_subcommand is None:
        from yolopatch.commands.operators import user_operators

        with errors():
            users = user_operators()
        out.print(operators_table(out.width, list(users.values())))


@ops_app.command("show", hidden=True, epilog="Example: yolopatch ops cbam")
def ops_show(name: Annotated[str, typer.Argument(metavar="NAME", help="One operator.")]) -> None:
    """One operator with its options and an example row (yours: with what `ops add` learned)."""
    from yolopatch.commands.operators import operator
    from yolopatch.render.operators import operator_detail

    with errors():
        out.print(operator_detail(operator(name, check_file=False)))


@ops_app.command("add", epilog="Example: yolopatch ops add examples/my_modules.py:ChannelGate")
def ops_add(
    spec: Annotated[str, typer.Argument(metavar="FILE.py:CLASS", help="Your module's file and class.")],
    name: Annotated[
        str | None, typer.Option("--name", help="The yaml name (default: the class name).")
    ] = None,
    rule: Annotated[
        str | None,
        typer.Option(
            "--rule",
            metavar="RULE",
            help="Declare the rule, CHANNELS[:STRIDE]: keep, conv, csp or N*c1, then 1, 2, 1/2, arg:PARAM or "
            "up:PARAM (conv:2, conv:arg:stride); the probe confirms it.",
        ),
    ] = None,
    maps: Annotated[
        list[str] | None,
        typer.Option("--map", metavar="PARAM=ROLE", help="A parameter's role: c1, c2, n, stride, up or -."),
    ] = None,
    settings: Annotated[
        list[str] | None,
        typer.Option(
            "--set", metavar="PARAM=VALUE", help="A constructor value (needed where there is no default)."
        ),
    ] = None,
    repo: Annotated[
        Path | None,
        typer.Option("--repo", metavar="PATH", help="The checkout the file's imports come from."),
    ] = None,
    installed: Annotated[
        bool,
        typer.Option(
            "--installed", help=f"The file imports the installed {installable_names()} (of --python)."
        ),
    ] = False,
    python: Annotated[
        str,
        typer.Option(
            "--python",
            metavar="PATH",
            help="With --installed: the Python to probe in.",
            show_default="the Python running yolopatch",
        ),
    ] = sys.executable,
    force: Annotated[bool, typer.Option("--force", help="Replace a record of the same name.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="SECONDS", help="The probe's time limit.", min=1)
    ] = 120,
) -> None:
    """Learn your own module (read with ast, probed in a child process) and record it in yolopatch.toml."""
    from yolopatch.commands.ops import add_operator, installed_target, repo_target
    from yolopatch.files import write_changes
    from yolopatch.render.operators import learned_lines

    exclusive(("--repo", repo is not None), ("--installed", installed))
    with errors():
        target = repo_target(repo) if repo else installed_target(python) if installed else None
        result = add_operator(
            spec, Path.cwd(), name, rule, maps or [], name_values(settings or []), force, target, timeout
        )
        write_changes([result.change])
    for line in learned_lines(result):
        out.print(line, markup=False)


@ops_app.command("remove", epilog="Example: yolopatch ops remove ChannelGate")
def ops_remove(name: Annotated[str, typer.Argument(metavar="NAME", help="The operator to forget.")]) -> None:
    """Remove an operator's record from yolopatch.toml.

    Your file stays, and so do injected copies until `yolopatch inject REPO --revert --op NAME`.
    """
    from yolopatch.commands.ops import remove_operator
    from yolopatch.files import write_changes

    with errors():
        change = remove_operator(name, Path.cwd())
        write_changes([change])
    out.print(f"{change.path}: removed [ops.{name}]", markup=False)
