"""Users' own modules: `ops add` learns one (ast, role map, probe), records it in yolopatch.toml, and every
command then finds it beside the built-in operators.

Core functions return frozen results; the CLI renders them and writes the one file change.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.targets.registry import TARGETS, child_settings, enclosing, import_kinds, installable, locate
from yolopatch.userop.learn import PROBE_SECONDS, Learned, fit, parse_rule, probe, trials
from yolopatch.userop.record import CONFIG, UserOp, find_config, load, record_text, removal_text, storable
from yolopatch.userop.roles import RoleMap, parse_map, role_map
from yolopatch.userop.source import ClassSource, read_class


@dataclass(frozen=True)
class ProbeTarget:
    """What satisfies the file's imports from a target while it is probed."""

    description: str  # recorded: "<package> (installed, /…/python)", "<family> checkout ../<folder>"
    python: str = sys.executable
    sys_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class AddResult:
    op: UserOp
    operator: Operator
    change: FileChange
    replaced: bool  # an older record of the same name was replaced
    roles: RoleMap
    source: ClassSource
    learned: Learned


def split_spec(spec: str) -> tuple[Path, str]:
    """`FILE.py:CLASS` (Windows drive letters are fine: the class is after the last colon)."""
    file, sep, cls = spec.rpartition(":")
    if not sep or not file or not cls.isidentifier():
        raise OptionError("FILE.py:CLASS", f"{spec}: write FILE.py:CLASS, e.g. my_modules.py:SEAttention.")
    return Path(file), cls


def parse_settings(source: ClassSource, pairs: Mapping[str, str]) -> dict[str, Any]:
    """`--set PARAM=VALUE`, values read as Python literals (text otherwise) of the parameter's type."""
    values: dict[str, Any] = {}
    for key, text in pairs.items():
        param = source.param(key)
        if param is None:
            raise OptionError(
                "--set",
                f"--set {key}={text}: {source.name} has no parameter {key}; its parameters: "
                f"{', '.join(p.name for p in source.params) or 'none'}.",
            )
        try:
            values[key] = param.parse(text)
        except ValueError as exc:
            raise OptionError("--set", f"--set {key}={text}: {exc}.") from None
    return values


def taken_names(ops: Mapping[str, UserOp]) -> dict[str, str]:
    """Names a user operator may not take, lower-cased, with who has them."""
    owners: dict[str, list[str]] = {}
    for target in TARGETS:
        for n in sorted(target.defined | target.rules.known):
            owner = f"{target.name}'" if target.name.endswith("s") else f"{target.name}'s"
            owners.setdefault(n.lower(), []).append(f"{owner} class {n}")
    taken = {name: " and ".join(found) for name, found in owners.items()}
    taken.update({name: f"the built-in operator {op.name}" for name, op in OPERATORS.items()})
    return taken


def add_operator(
    spec: str,
    cwd: Path,
    name: str | None = None,
    rule: str | None = None,
    maps: Sequence[str] = (),
    settings: Mapping[str, str] = (),  # type: ignore[assignment]
    force: bool = False,
    target: ProbeTarget | None = None,
    timeout: float = PROBE_SECONDS,
) -> AddResult:
    """Learn FILE.py:CLASS and plan its record in the nearest yolopatch.toml (a new one in `cwd`)."""
    path, cls = split_spec(spec)
    path = path if path.is_absolute() else cwd / path
    source = read_class(path, cls, import_kinds())
    roles = role_map(source, parse_map(maps))
    values = parse_settings(source, dict(settings))
    _require_settings(source, roles, values)
    yaml_name = name or cls
    config = find_config(cwd) or cwd / CONFIG
    existing = read_text(config) if config.exists() else None
    recorded = load(config if existing is not None else None)
    _refuse_clash(yaml_name, source, recorded, force)
    declared = parse_rule(rule, source) if rule else None
    chosen = target or default_target(source, cwd)
    defaults = {p.name: p.default for p in source.params if not p.required}
    observed = _probe(source, roles, values, defaults, chosen, timeout)
    learned = fit(source, roles, values, observed, declared)
    _require_options(source, learned, values)
    defaults = {**_adapter_defaults(source, learned.roles), **defaults}
    op = UserOp(
        name=yaml_name,
        file=path.resolve(),
        cls=cls,
        rule=learned.rule,
        params=tuple(p.name for p in source.params),
        roles=learned.roles,
        defaults={k: v for k, v in defaults.items() if _literal(source, k) and storable(v)},
        values=values,
        divisor=learned.divisor,
        min_channels=learned.min_channels,
        unused=learned.unused,
        evidence=learned.evidence,
        learned="declared rule, confirmed by the probe" if declared else "probe",
        target=chosen.description,
        sha256=source.digest,
        config=config,
    )
    from yolopatch.userop.adapter import as_operator

    change = FileChange(config, existing, record_text(existing, op))
    return AddResult(op, as_operator(op), change, yaml_name in recorded, roles, source, learned)


def _literal(source: ClassSource, name: str) -> bool:
    param = source.param(name)
    return param is not None and param.default_text != param.default  # not a non-literal kept as text


def _require_settings(source: ClassSource, roles: RoleMap, values: Mapping[str, Any]) -> None:
    missing = [
        p.name for p in source.params if p.required and roles.roles[p.name] == "-" and p.name not in values
    ]
    if missing:
        given = " ".join(f"--set {m}=VALUE" for m in missing)
        raise YolopatchError(
            f"{source.path}:{source.line}: {source.name}: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} "
            f"no default and no channel role; give {'it' if len(missing) == 1 else 'them'} with {given} (or "
            f"--map {missing[0]}=c1|c2|n|stride|up if it is one)."
        )


def _require_options(source: ClassSource, learned: Learned, values: Mapping[str, Any]) -> None:
    """A parameter without a default that the probe showed is no repeat count (SEAM's own depth `n`) is an
    ordinary option: its value must be given, as for any other."""
    roles = learned.roles
    missing = [p.name for p in source.params if p.required and roles[p.name] == "-" and p.name not in values]
    if missing:
        why = (
            "a keep block's n is its own depth"
            if learned.rule.channels == "keep"
            else "no block repeats with it"
        )
        raise YolopatchError(
            f"{source.path}:{source.line}: {source.name}: {', '.join(missing)} is an ordinary option here, not "
            f"the yaml's repeat count ({why}), and has no default; give it with "
            f"{' '.join(f'--set {m}=VALUE' for m in missing)}."
        )


def _adapter_defaults(source: ClassSource, roles: Mapping[str, str]) -> dict[str, Any]:
    """A stride or upsampling factor without a default gets the adapter's: 1 and 2 (apply writes the
    replaced row's whenever it differs)."""
    return {
        p.name: 1 if roles[p.name] == "stride" else 2
        for p in source.params
        if p.required and roles[p.name] in ("stride", "up")
    }


def _refuse_clash(name: str, source: ClassSource, recorded: Mapping[str, UserOp], force: bool) -> None:
    if not name.isidentifier():
        raise OptionError("--name", f"--name {name}: a yaml name must be a Python identifier.")
    owner = taken_names(recorded).get(name.lower())
    if owner:
        raise OptionError(
            "--name",
            f"{source.path}:{source.line}: {name} is the name of {owner}; a yaml row named {name} would build "
            f"that instead. Give yours another yaml name: --name {name}{'X' if name[-1].isdigit() else '2'}.",
        )
    old = recorded.get(name)
    if old is not None and not force and (old.file != source.path.resolve() or old.cls != source.name):
        raise YolopatchError(
            f"{old.config}: [ops.{name}] already records {old.cls} from {old.file}; choose another --name, or "
            "replace it with --force."
        )


def default_target(source: ClassSource, cwd: Path) -> ProbeTarget:
    """For a file that imports from a target: the checkout around `cwd` or the file (models/common.py
    imports), or the installed package this Python imports; for any other file, none."""
    families = source.families
    if any(t.imports.name in families for t in TARGETS if not t.installable):
        for place in (cwd / "probe", source.path):
            found = enclosing(place)
            if found is not None:
                return repo_target(found)
        raise YolopatchError(
            f"{source.path}:{source.target_imports[0].line}: imports from a checkout "
            f"({source.target_imports[0].module}); name the checkout it was written for with --repo PATH."
        )
    package = next((t.installable for t in installable() if t.imports.name in families), None)
    if package is not None:
        return ProbeTarget(f"{package} as this Python imports it")
    return ProbeTarget("")


def repo_target(repo: Path) -> ProbeTarget:
    """--repo PATH: a checkout or package folder, which goes first on the probe's path."""
    target, where = locate(repo)
    return ProbeTarget(
        f"{target.name} checkout {repo}", sys_path=tuple(str(p.resolve()) for p in where.import_paths)
    )


def installed_target(python: str) -> ProbeTarget:
    """--installed [--python PATH]: the package that Python imports; the probe runs in that Python."""
    (target, *_) = installable()
    package = target.installed(python)
    return ProbeTarget(f"{target.installable} installed for {python} ({package.label})", python=python)


def _probe(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    defaults: Mapping[str, Any],
    target: ProbeTarget,
    timeout: float,
) -> dict[str, Any]:
    settings = child_settings()
    return probe(source, trials(roles, values, defaults), target.sys_path, target.python, timeout, settings)


def user_ops(cwd: Path) -> dict[str, UserOp]:
    return load(find_config(cwd))


def remove_operator(name: str, cwd: Path) -> FileChange:
    config = find_config(cwd)
    recorded = load(config)
    if config is None or name not in recorded:
        where = f"{config}" if config else f"no {CONFIG} in {cwd} or above"
        raise YolopatchError(f"{name}: no such user operator ({where}); `yolopatch ops` lists them.")
    text = read_text(config)
    return FileChange(config, text, removal_text(text, name))
