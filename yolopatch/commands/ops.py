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
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.shell import shell_word
from yolopatch.targets.base import Target
from yolopatch.targets.registry import (
    TARGETS,
    beside,
    child_settings,
    enclosing,
    import_kinds,
    installable,
    locate,
    target_for,
)
from yolopatch.userop.backbone import backbone_trials, fit_backbone, is_backbone_output, refuse_import
from yolopatch.userop.fusion import first_shape, fit_fusion, fusion_trials, sweep_trials
from yolopatch.userop.learn import PROBE_SECONDS, Learned, fit, parse_rule, probe, trials
from yolopatch.userop.record import CONFIG, UserOp, find_config, load, record_text, removal_text, storable
from yolopatch.userop.roles import RoleMap, parse_map, role_map
from yolopatch.userop.rule import Rule
from yolopatch.userop.source import ClassSource, read_class
from yolopatch.userop.timm import learn_timm, timm_name, timm_record, timm_source
from yolopatch.userop.timm import request as timm_request
from yolopatch.userop.timm import yaml_name as timm_yaml_name


@dataclass(frozen=True)
class ProbeTarget:
    """What satisfies the file's imports from a target while it is probed."""

    description: str  # recorded: "<package> (installed, /…/python)", "<family> checkout ../<folder>"
    python: str = sys.executable
    sys_path: tuple[str, ...] = ()


@dataclass(frozen=True)
class NextStep:
    """What `ops add`'s next-step text can name instead of placeholders: a model yaml of the working
    folder (else the target's stock yaml in the checkout at hand), and where to inject."""

    model: Path | None = None
    place: str | None = None  # a checkout, or --installed
    target: Target | None = None


@dataclass(frozen=True)
class AddResult:
    op: UserOp
    operator: Operator
    change: FileChange
    replaced: bool  # an older record of the same name was replaced
    roles: RoleMap
    source: ClassSource
    learned: Learned
    next: NextStep = NextStep()


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
    model = timm_name(spec)
    if model is not None:
        return _add_timm(model, cwd, name, settings, force, target or ProbeTarget(""), timeout)
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
    chosen = target or default_target(source, cwd)
    defaults = {p.name: p.default for p in source.params if not p.required}
    learned: Learned | None = None
    if source.head:  # its rule is read from the source; the probe only imports it, to name what it lacks
        _require_imports(source, _probe(source, {}, chosen, timeout), chosen.python)
        learned = _head(source, rule)
    if (
        learned is None and source.outputs == "list"
    ):  # it looks like a backbone: probed as one, unless it is a block after all
        backbone = _probe(source, backbone_trials(values), chosen, timeout)
        learned = fit_backbone(source, roles, values, backbone, chosen.python, rule)
    if learned is None and source.inputs == "list":
        learned = _learn_fusion(source, roles, values, chosen, timeout, rule)
    if learned is None:
        declared = parse_rule(rule, source) if rule else None
        observed = _probe(source, trials(roles, values, defaults), chosen, timeout)
        if is_backbone_output(observed):
            backbone = _probe(source, backbone_trials(values), chosen, timeout)
            learned = fit_backbone(source, roles, values, backbone, chosen.python, rule)
        learned = learned or fit(source, roles, values, observed, declared)
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
        learned=f"its {source.head} base, read from the source"
        if source.head
        else "declared rule, confirmed by the probe"
        if rule
        else "probe",
        target=chosen.description,
        sha256=source.digest,
        config=config,
        fusion=learned.fusion,
        backbone=learned.backbone,
        head=source.head,
    )
    from yolopatch.userop.adapter import as_operator

    change = FileChange(config, existing, record_text(existing, op))
    step = next_step(source, cwd)
    return AddResult(op, as_operator(op), change, yaml_name in recorded, roles, source, learned, step)


def next_step(source: ClassSource, cwd: Path) -> NextStep:
    """The model and the target at hand: a checkout around or beside the working folder of a family the
    file imports (any, when it imports none), else the installed package it imports; a model yaml of the
    working folder that is that family's, else the checkout's stock yaml."""
    families = source.families
    wanted = [t for t in TARGETS if not families or t.imports.name in families]
    for target in wanted:
        around = enclosing(cwd / "probe")
        found = around if around is not None and locate(around)[0] is target else beside(cwd, target)
        if found is not None:
            model = _model_in(cwd, target) or target.stock_yaml(locate(found)[1])
            return NextStep(model, shell_word(found), target)
    package = next((t for t in wanted if t.installable and t.imports.name in families), None)
    if package is not None:
        return NextStep(_model_in(cwd, package), "--installed", package)
    for target in wanted:  # a model of the working folder, injected where its family usually is
        model = _model_in(cwd, target)
        if model is not None:
            return NextStep(model, target.inject_argument(), target)
    return NextStep()


def _model_in(folder: Path, target: Target) -> Path | None:
    """The first yaml of `folder` (name order) that is a model of `target`."""
    for path in sorted(folder.glob("*.yaml"))[:20]:
        try:
            parsed = parse_model_yaml(read_text(path), str(path))
        except YolopatchError:
            continue
        if target_for(parsed.values) is target:
            return path.relative_to(folder) if folder == Path.cwd() else path
    return None


def _literal(source: ClassSource, name: str) -> bool:
    param = source.param(name)
    return param is not None and param.default_text != param.default  # not a non-literal kept as text


def _head(source: ClassSource, declared: str | None) -> Learned:
    """A subclass of the target's Detect: recorded with the base it extends. Its constructor is the base's
    (the row's args and the input channels, as parse_model's Detect collection passes them); `inject` and
    `check` build the target's model with it (strides, a loss step) before anything depends on it."""
    if declared is not None and declared != "head":
        raise OptionError(
            "--rule", f"--rule {declared}: {source.name} is a detection head; its rule is `head`."
        )
    return Learned(
        rule=Rule("head"),
        roles={p.name: "-" for p in source.params},
        values={},
        divisor=1,
        min_channels=1,
        unused=(),
        evidence=(
            f"head: subclasses {_possessive(_head_family(source))} own {source.head}; built by parse_model's "
            f"{source.head} collection with the row's args and its inputs' channels",
        ),
        parameters=0,
    )


def _require_imports(source: ClassSource, observed: Mapping[str, Any], python: str) -> None:
    """The file imports with the target's code (a package it needs and this Python lacks, named)."""
    if "load" in observed:
        where = f"{source.path}:{observed['load'].get('line') or source.line}"
        refuse_import(where, observed["load"]["error"], python)
        raise YolopatchError(f"{where}: importing the file failed: {observed['load']['error']}")


def _head_family(source: ClassSource) -> str:
    """The family whose own head the class extends (of those whose code the file imports)."""
    owners = [t.name for t in TARGETS if source.head in t.imports.heads and t.imports.name in source.families]
    return owners[0] if owners else " or ".join(source.families)


def _possessive(name: str) -> str:
    return f"{name}'" if name.endswith("s") else f"{name}'s"


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
    source: ClassSource, request: Mapping[str, dict], target: ProbeTarget, timeout: float
) -> dict[str, Any]:
    return probe(source, request, target.sys_path, target.python, timeout, child_settings())


def _learn_fusion(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    target: ProbeTarget,
    timeout: float,
    declared: str | None,
) -> Learned:
    """A fusion class: the shapes probe, then the width sweep at the first shape it took."""
    observed = _probe(source, fusion_trials(roles, values), target, timeout)
    shape = first_shape(observed, roles)
    swept = _probe(source, sweep_trials(roles, values, shape), target, timeout) if shape else {}
    return fit_fusion(source, roles, values, observed, swept, declared)


def _add_timm(
    model: str,
    cwd: Path,
    name: str | None,
    settings: Mapping[str, str],
    force: bool,
    target: ProbeTarget,
    timeout: float,
) -> AddResult:
    """`timm:NAME`: every feature map it gives, then the out_indices of strides 8, 16 and 32, confirmed."""
    source = timm_source(model)
    values = parse_settings(source, dict(settings))
    config = find_config(cwd) or cwd / CONFIG
    existing = read_text(config) if config.exists() else None
    recorded = load(config if existing is not None else None)
    yaml_name = name or timm_yaml_name(model)
    _refuse_clash(yaml_name, source, recorded, force)

    def run(request: Mapping[str, dict]) -> dict[str, Any]:
        return probe(source, request, (), target.python, timeout, child_settings(), timm_request(model))

    learned, source = learn_timm(model, values, run, target.python)
    op = timm_record(yaml_name, source, learned, values, target.description, config)
    from yolopatch.userop.adapter import as_operator

    change = FileChange(config, existing, record_text(existing, op))
    roles = RoleMap(op.roles, frozenset())
    return AddResult(op, as_operator(op), change, yaml_name in recorded, roles, source, learned)


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
