"""`yolopatch.toml`: the user's operators as `ops add` learned them, one table per yaml name.

Plain and editable by hand; editing it counts as declaring. It is found in the current folder or the
nearest parent that has one (as other tools find their config files), and rewritten with tomlkit, which
keeps the user's comments and layout. `apply`, `inject` and `layers` read it without torch and without
importing the user's file; the file's hash says when the file changed since it was learned.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

from yolopatch import __version__
from yolopatch.child import CONFIG_VARIABLE
from yolopatch.errors import YolopatchError
from yolopatch.files import read_text
from yolopatch.userop.rule import (
    CHANNEL_RULES,
    SIZE_PATTERNS,
    BackboneSpec,
    FusionRule,
    Rule,
    is_channel_rule,
    parse_fusion_rule,
)
from yolopatch.userop.source import file_digest

CONFIG = "yolopatch.toml"
_HEADER = (
    "yolopatch's record of your own operators (`yolopatch ops add FILE.py:CLASS`). You may edit it: what\n"
    "you write here counts as declared. `yolopatch ops NAME` shows one, `yolopatch ops remove NAME` drops it."
)


@dataclass(frozen=True)
class UserOp:
    """One recorded operator. `name` is its yaml name (the adapter class `inject` writes); `cls` the user's
    class in `file` (absolute here, relative to the config's folder in the file)."""

    name: str
    file: Path
    cls: str
    rule: Rule
    params: tuple[str, ...]
    roles: Mapping[str, str]
    defaults: Mapping[str, Any]  # literal defaults as the source has them
    values: Mapping[str, Any] = field(default_factory=dict)  # --set: passed to the constructor
    divisor: int = 1
    min_channels: int = 1
    unused: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()
    learned: str = "probe"
    target: str = ""
    sha256: str = ""
    config: Path = Path(CONFIG)
    fusion: FusionRule | None = None  # a fusion class (its forward takes a list): its rules and constraints
    backbone: BackboneSpec | None = None  # a backbone (its forward returns a list of maps): its outputs
    head: str = ""  # a detection head: the target's class it extends ("Detect"), registered with it

    @property
    def options(self) -> tuple[tuple[str, Any], ...]:
        """The adapter's yaml arguments after the channels, in constructor order, with their defaults: the
        ordinary options, the stride and the upsampling factor that have a literal value."""
        return tuple(
            (p, self.values[p] if p in self.values else self.defaults[p])
            for p in self.params
            if self.roles[p] in ("-", "stride", "up") and (p in self.values or p in self.defaults)
        )

    def changed(self) -> str | None:
        """Why the record may no longer describe the file (None: it does)."""
        if self.backbone is not None and self.backbone.factory == "timm":
            return None  # timm:NAME: no file of the user's
        try:
            digest = file_digest(self.file.read_bytes())
        except OSError:
            return f"{self.file} (recorded for operator {self.name}) is missing"
        if self.sha256 and digest != self.sha256:
            return (
                f"{self.file} changed since `ops add` learned {self.name} from it; run "
                f"`yolopatch ops add {self.file}:{self.cls} --name {self.name} --force` again"
            )
        return None


def find_config(start: Path) -> Path | None:
    """The record YOLOPATCH_CONFIG names, else yolopatch.toml in `start` or its nearest parent that has one
    (your own operators are recorded per project folder; the variable points every folder at one record)."""
    named = os.environ.get(CONFIG_VARIABLE)
    if named:
        return Path(named)
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG).is_file():
            return folder / CONFIG
    return None


def child_config() -> Path | None:
    """In a build child: the record its parent found."""
    found = os.environ.get(CONFIG_VARIABLE)
    return Path(found) if found else None


def _document(path: Path) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(read_text(path))
    except TOMLKitError as exc:
        raise YolopatchError(f"{path}: not valid TOML ({exc}); fix it or remove it.") from None


def load(config: Path | None) -> dict[str, UserOp]:
    """Every operator recorded in `config` (none when there is no config)."""
    if config is None:
        return {}
    ops = _document(config).get("ops", {})
    return {str(name): _from_table(config, str(name), table) for name, table in ops.items()}


def _from_table(config: Path, name: str, table: Mapping[str, Any]) -> UserOp:
    where = f"{config}: [ops.{name}]"
    try:
        params = tuple(str(p) for p in table["params"])
        rule, fusion = _rules(table, params, where)
        backbone = _backbone(table, where)
        roles = {str(k): str(v) for k, v in table["map"].items()}
        return UserOp(
            name=name,
            file=_file(config, str(table["file"])),
            cls=str(table["class"]),
            rule=rule,
            params=params,
            roles={p: roles.get(p, "-") for p in params},
            defaults=_plain(table.get("defaults", {})),
            values=_plain(table.get("set", {})),
            divisor=int(table.get("divisor", 1)),
            min_channels=int(table.get("min_channels", 1)),
            unused=tuple(str(u) for u in table.get("unused", ())),
            evidence=tuple(str(e) for e in table.get("evidence", ())),
            learned=str(table.get("learned", "declared")),
            target=str(table.get("target", "")),
            sha256=str(table.get("sha256", "")),
            config=config,
            fusion=fusion,
            backbone=backbone,
            head=str(table["base"]) if table.get("kind") == "head" else "",
        )
    except KeyError as exc:
        raise YolopatchError(f"{where} has no {exc.args[0]!r}; run `yolopatch ops add` again.") from None


def _rules(table: Mapping[str, Any], params: tuple[str, ...], where: str) -> tuple[Rule, FusionRule | None]:
    """The recorded rule; for a fusion class (`kind = "fusion"`) its rules and constraints too."""
    rule_text = str(table["rule"])
    if table.get("kind") in ("backbone", "head"):
        return Rule(str(table["kind"])), None
    if table.get("kind") == "fusion":
        try:
            out, size = parse_fusion_rule(rule_text, params)
        except YolopatchError as exc:
            raise YolopatchError(f"{where}: {exc}") from None
        fusion = FusionRule(
            out,
            size,
            tuple(int(c) for c in table.get("inputs", ())),
            str(table.get("widths", "any")),
            tuple(str(s) for s in table.get("sizes", SIZE_PATTERNS)),
            str(table.get("channels_as", "list")),
        )
        return Rule("fusion"), fusion
    channels, _, stride = rule_text.partition(":")
    if not is_channel_rule(channels):
        raise YolopatchError(
            f"{where}: rule {rule_text!r}: channels must be one of {', '.join(CHANNEL_RULES)} (N a whole "
            'number, 2 or more), or write kind = "fusion" for a fusion class.'
        )
    return Rule(channels, stride or "1"), None


def _file(config: Path, file: str) -> Path:
    """The recorded file, relative to the record's folder; `timm:NAME` (no file of the user's) as it is."""
    return Path(file) if file.startswith("timm:") else (config.parent / file).resolve()


def _backbone(table: Mapping[str, Any], where: str) -> BackboneSpec | None:
    """A backbone's recorded outputs (`kind = "backbone"`: `widths`, `strides`, `factory`)."""
    if table.get("kind") != "backbone":
        return None
    try:
        widths = tuple(int(w) for w in table["widths"])
        strides = tuple(int(s) for s in table["strides"])
    except (TypeError, ValueError):
        widths, strides = (), ()
    if not widths or len(widths) != len(strides):
        raise YolopatchError(
            f"{where}: a backbone needs `widths` and `strides`, one per output, as whole numbers; run "
            "`yolopatch ops add` again."
        )
    return BackboneSpec(widths, strides, str(table.get("factory", "")))


def _plain(table: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k): getattr(v, "unwrap", lambda v=v: v)() for k, v in table.items()}


def record_text(existing: str | None, op: UserOp) -> str:
    """The config's new text with `op`'s table added or replaced; everything else kept as written."""
    doc = tomlkit.parse(existing) if existing else tomlkit.document()
    if existing is None:
        for line in _HEADER.split("\n"):
            doc.add(tomlkit.comment(line))
        doc.add(tomlkit.nl())
    ops = doc.get("ops")
    if ops is None:
        ops = tomlkit.table(is_super_table=True)
        doc["ops"] = ops
    ops[op.name] = _table(op)
    return tomlkit.dumps(doc)


def removal_text(existing: str, name: str) -> str:
    doc = tomlkit.parse(existing)
    del doc["ops"][name]  # type: ignore[union-attr]
    return tomlkit.dumps(doc)


def _table(op: UserOp) -> tomlkit.items.Table:
    table = tomlkit.table()
    try:
        file = op.file.resolve().relative_to(op.config.parent.resolve()).as_posix()
    except ValueError:
        file = op.file.resolve().as_posix()
    if op.backbone is not None and op.backbone.factory == "timm":
        file = op.file.as_posix()
    table["file"] = file
    table["class"] = op.cls
    if op.backbone is not None:
        table["kind"] = "backbone"
        table["rule"] = "backbone"
        table["widths"] = list(op.backbone.widths)
        table["strides"] = list(op.backbone.strides)
        table["factory"] = op.backbone.factory
    elif op.head:
        table["kind"] = "head"
        table["rule"] = "head"
        table["base"] = op.head
    elif op.fusion is not None:
        table["kind"] = "fusion"
        table["rule"] = str(op.fusion)
        table["inputs"] = list(op.fusion.counts)  # [] : any number, 2 or more
        table["widths"] = op.fusion.widths
        table["sizes"] = list(op.fusion.sizes)
        table["channels_as"] = op.fusion.channels_as
    else:
        table["rule"] = str(op.rule)
    table["params"] = list(op.params)
    table["map"] = _inline(op.roles)
    table["defaults"] = _inline(op.defaults)
    table["set"] = _inline(op.values)
    table["divisor"] = op.divisor
    table["min_channels"] = op.min_channels
    table["unused"] = list(op.unused)
    table["learned"] = op.learned
    table["evidence"] = _lines(op.evidence)
    table["target"] = op.target
    table["sha256"] = op.sha256
    table["yolopatch"] = __version__
    return table


def _inline(values: Mapping[str, Any]) -> tomlkit.items.InlineTable:
    inline = tomlkit.inline_table()
    inline.update({k: v for k, v in values.items() if storable(v)})
    return inline


def storable(value: Any) -> bool:
    """TOML can hold it (None cannot: such a default stays the class's own)."""
    if isinstance(value, (list, tuple)):
        return all(storable(v) for v in value)
    return isinstance(value, (bool, int, float, str))


def _lines(items: Sequence[str]) -> tomlkit.items.Array:
    array = tomlkit.array()
    array.extend(items)
    return array.multiline(True)
