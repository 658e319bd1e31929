"""The operators a command may use: the built-ins and the user's own (recorded in yolopatch.toml), read
without torch and without importing the user's files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from yolopatch.child import CONFIG_VARIABLE
from yolopatch.csp import operators_used, split_variant, variant_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.formats.registry import format_for
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.index import INDEX
from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.operators.spec import Operator
from yolopatch.targets.registry import csp_blocks
from yolopatch.userop.adapter import user_operators as as_operators
from yolopatch.userop.record import CONFIG, find_config, load


def user_operators(cwd: Path | None = None) -> dict[str, Operator]:
    """The user's operators recorded in the nearest yolopatch.toml, by lower-case name."""
    return as_operators(load(find_config(cwd or Path.cwd())))


def operator(name: str, check_file: bool = True) -> Operator:
    """A built-in or a recorded operator; a recorded one whose file changed since `ops add` is refused. An
    unknown name says which record was read (or where none was found) and how to point at another."""
    try:
        op = get_operator(name, user_operators())
    except YolopatchError as exc:
        raise OptionError("--op", f"{exc} {records_read()}") from None
    if check_file:
        refuse_changed([op])
    return op


def refuse_changed(operators: Sequence[Operator]) -> None:
    """A user's operator whose file changed since `ops add` learned it is not used until learned again."""
    for op in operators:
        changed = op.user.changed() if op.user is not None else None
        if changed:
            raise YolopatchError(changed + ".")


def known_operator(name: str) -> Operator:
    """An operator a target has a block for: a built-in, the user's own, or an `--into` class."""
    users = user_operators()
    known = {op.name: op for op in [*OPERATORS.values(), *users.values()]}
    if name == INDEX.name:
        return INDEX
    parts = split_variant(name, csp_blocks(), known)
    if parts is not None:
        return variant_operator(parts[0], known[parts[1]])
    return get_operator(name, users)


def operators_in(model: Path, text: str) -> list[Operator]:
    """The operators a model uses (the user's own and `--into` classes included; in a .cfg, the section
    types each needs registered); none is an error."""
    known = [*OPERATORS.values(), *user_operators().values()]
    fmt = format_for(model)
    if fmt is not None:
        found = [op for op in known if fmt.uses(text, str(model), op)]
    else:
        used = {layer.module for layer in parse_model_yaml(text, str(model)).layers}
        found = operators_used(used, known, csp_blocks())
    if not found:
        raise YolopatchError(
            f"{model}: uses none of the operators yolopatch adds ({', '.join(o.name for o in known)}); "
            "nothing to inject."
        )
    refuse_changed(found)
    if any(op.backbone is not None for op in found) and INDEX not in found:
        found.append(INDEX)  # its Index rows: the target's own where it has one (the target's plan decides)
    return found


def records_read(cwd: Path | None = None) -> str:
    """Where your own operators were looked for: the record read, or the folders searched."""
    folder = (cwd or Path.cwd()).resolve()
    config = find_config(folder)
    if config is None:
        return (
            f"Your own operators: no {CONFIG} in {folder} or a parent folder, and {CONFIG_VARIABLE} is not set "
            f"(`ops add` records them in the project folder; set {CONFIG_VARIABLE}=PATH/TO/{CONFIG} to use a "
            "record from elsewhere)."
        )
    names = ", ".join(op.name for op in load(config).values()) or "none"
    return (
        f"Your own operators: read {config} (records {names}); set {CONFIG_VARIABLE}=PATH/TO/{CONFIG} to use "
        "another record."
    )
