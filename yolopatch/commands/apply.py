"""`apply`: turn chosen layers into an operator, or insert one after them, as text splices.

Text in, text out: parse to find the spans, splice only those, parse the result again and check that it
means exactly the intended model. Every byte outside the edited spans stays as it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from yolopatch.channels import (
    geometries,
    normalize_module,
    refuse_bad_rows,
    simulate,
    with_variants,
)
from yolopatch.commands.heads import head_code, prove_head
from yolopatch.csp import slot_of, variant_name
from yolopatch.edit.backbone import DEFAULT_LEVELS, check_strides, plan_backbone
from yolopatch.edit.decide import Context, decide, into_decision, place_of, verb
from yolopatch.edit.fusion import check_sources, decide_fusion
from yolopatch.edit.options import ApplyOptions, Change
from yolopatch.edit.rows import flow, non_ascii_warning, plan_insert, plan_replace, verify
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import FileChange, read_text
from yolopatch.formats.base import FormatRequest, FormatResult, ModelFormat
from yolopatch.formats.registry import format_for
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import OPERATORS
from yolopatch.operators.spec import Operator
from yolopatch.selection import select_layers
from yolopatch.splice import Edit, splice
from yolopatch.targets.base import Target
from yolopatch.targets.registry import beside, enclosing, target_for


@dataclass(frozen=True)
class ApplyResult:
    original: str
    text: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...]
    target: Target  # whose parse_model the file is for
    written: str  # the class the edit wrote (the operator, or the first `--into` class)
    selected: tuple[int, ...] = ()  # the input's layers that were edited (replaced, or inserted after)

    @property
    def changed(self) -> bool:
        return self.text != self.original


@dataclass(frozen=True)
class Variant:
    """One file of `apply --each`: the operator at one position of the input."""

    layer: int  # the input's layer it replaces or follows
    result: ApplyResult


def apply_each(
    text: str, layers: str, options: ApplyOptions, name: str = "<yaml>"
) -> tuple[ApplyResult, tuple[Variant, ...]]:
    """One variant per layer the selection edits, for ablations, with the edit of them all in one file:
    the same checks, refusals and notes, so a variant exists exactly where the combined edit changes a
    layer."""
    combined = apply_operator(text, layers, options, name)
    variants = tuple(Variant(i, apply_operator(text, str(i), options, name)) for i in combined.selected)
    return combined, variants


def apply_operator(text: str, layers: str, options: ApplyOptions, name: str = "<yaml>") -> ApplyResult:
    """Rewrite the selected layers of a model yaml's text; raise YolopatchError when it cannot be done."""
    if (options.op.backbone is not None) != (layers == "backbone" and bool(options.levels)):
        raise OptionError(
            "--backbone",
            f"{options.op.name} is a backbone: swap it in with --backbone {options.op.name}"
            if options.op.backbone is not None
            else f"--backbone {options.op.name}: not a backbone (`yolopatch ops add FILE.py:CLASS` learns one "
            "whose forward returns a list of maps).",
        )
    if options.op.backbone is not None:
        return apply_backbone(text, options, name)
    if options.op.head:
        return apply_head(text, layers, options, name)
    values = options.resolved
    if options.rewire not in ("all", "next"):
        raise YolopatchError(f"--rewire {options.rewire}: use 'all' or 'next'.")
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    geos = geometries(model.values, target.rules, options.scale, options.registered)
    logical = model.logical_rows()
    sims = {scale: simulate(logical, geo, name, options.hints) for scale, geo in geos.items()}
    first = next(iter(geos.values()))
    refuse_bad_rows(model, first.rules, options.hints)
    patched = any(normalize_module(layer.module) == options.op.name for layer in model.layers)
    selection = select_layers(layers, model.layers, absent_ok=first.rules.known if patched else ())
    already = [f"--layers {term} matches no layer any more: already patched." for term in selection.unmatched]
    skipped: list[str] = []
    targets: dict[int, int | None] = {}  # index -> the inserted operator's first argument
    context = Context(model, first, options, values)
    fusion = options.op.fusion is not None
    check_sources(options.sources, len(model.layers), fusion, options.insert)
    for index in selection.indices:
        layer = model.layers[index]
        if fusion:
            reason, argument = decide_fusion(context, geos, layer, sims)
        else:
            reason, argument = decide(
                context, geos, layer, {scale: sims[scale].shapes[index] for scale in sims}
            )
        if reason is None:
            targets[index] = argument
        elif reason.startswith("already"):
            already.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        elif index not in selection.explicit:
            skipped.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        else:
            raise YolopatchError(f"{place_of(model, layer)}: cannot {verb(options)}: {reason}.")
    if not targets and not already:
        raise YolopatchError(f"{name}: --layers {layers} leaves nothing to change. " + " ".join(skipped))
    notes = [*sims[first.scale].warnings, *already, *skipped]
    if options.insert:
        rows, edits, changes = plan_insert(model, targets, options, values)
    else:
        rows, edits, changes = plan_replace(model, targets, options.op, values, first.rules)
    new_text = splice(text, edits)
    notes += non_ascii_warning(verify(new_text, rows, geos, name), first.rules)
    return _result(text, new_text, changes, notes, target, options.op.name, sorted(targets))


def apply_backbone(text: str, options: ApplyOptions, name: str = "<yaml>") -> ApplyResult:
    """`--backbone NAME`: the stock rows that make the levels become one backbone row and one Index row per
    level, checked at every scale: each later row keeps its stride, and the rows reading the backbone get
    its real widths."""
    op = options.op
    if options.values:
        raise OptionError(
            "--set",
            f"{op.name}'s widths were learned with its recorded options; to build it with others, learn it "
            f"again with them (`yolopatch ops add ... --set PARAM=VALUE --name {op.name}2`).",
        )
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    if any(normalize_module(layer.module) == op.name for layer in model.layers):
        return _result(text, text, (), (f"{name}: already has the backbone {op.name}.",), target, op.name, ())
    geos = geometries(model.values, target.rules, options.scale, options.registered)
    first = next(iter(geos.values()))
    refuse_bad_rows(model, first.rules, options.hints)
    logical = model.logical_rows()
    sims = {scale: simulate(logical, geo, name, options.hints) for scale, geo in geos.items()}
    levels = options.levels or DEFAULT_LEVELS
    plan = plan_backbone(model, op, levels, options.resolved, sims[first.scale])
    new_text = splice(text, plan.edits)
    verify(new_text, plan.rows, geos, name)
    for scale, geo in geos.items():
        check_strides(simulate(plan.rows, geo, name, options.hints), plan, scale, name)
    notes = [*sims[first.scale].warnings]
    return _result(text, new_text, plan.changes, notes, target, op.name, tuple(plan.replaced))


def apply_head(text: str, layers: str, options: ApplyOptions, name: str = "<yaml>") -> ApplyResult:
    """A head in place of the target's own (the Detect row): the module changes; `from` and the args ([nc],
    which parse_model completes with the inputs' channels) stay as they are, followed by the values of
    constructor parameters the head adds before `ch` when --set gives them."""
    op = options.op
    if options.insert or options.sources:
        raise OptionError(
            "--insert" if options.insert else "--from",
            f"{op.name} is a detection head: it replaces the {op.head} row (no --insert or --from); "
            "`apply MODEL.yaml --layers " + op.head + f" --op {op.name}`.",
        )
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    if op.head not in target.imports.heads:
        raise YolopatchError(
            f"{name}: a {target.name} model; {op.name} subclasses another family's {op.head}, and only a model of "
            "that family can have its head swapped for it."
        )
    selection = select_layers(layers, model.layers, absent_ok={op.head})
    edits: list[Edit] = []
    changes: list[Change] = []
    notes = [f"--layers {term} matches no layer any more: already patched." for term in selection.unmatched]
    for index in selection.indices:
        layer = model.layers[index]
        module = normalize_module(layer.module)
        if module == op.name:
            notes.append(f"layer {index} ({layer.module}) left as it is: already {op.name}.")
        elif module != op.head:
            if index in selection.explicit:
                raise YolopatchError(
                    f"{place_of(model, layer)}: cannot replace {layer.module} with {op.name}: {op.name} is a "
                    f"detection head built on {op.head}; it replaces {op.head} rows only."
                )
        else:
            edits.append(Edit(layer.module_span.start, layer.module_span.end, op.name))
            args = head_args(
                op, layer.args, text[layer.args_span.start : layer.args_span.end], options.values
            )
            if args is not None:
                edits.append(Edit(layer.args_span.start, layer.args_span.end, args))
            old = text[layer.row.start : layer.row.end]
            row = splice(
                old,
                [
                    Edit(e.start - layer.row.start, e.end - layer.row.start, e.text)
                    for e in edits[-1 - bool(args) :]
                ],
            )
            changes.append(Change(index, "replaced", old, row))
    if not edits and not notes:
        raise YolopatchError(f"{name}: --layers {layers} selects no {op.head} row; the head is the last row.")
    selected = [c.index for c in changes]
    return _result(text, splice(text, edits), changes, notes, target, op.name, selected)


def head_args(op: Operator, args: Sequence[Any], written: str, values: Mapping[str, Any]) -> str | None:
    """The head row's args with --set values of the parameters the head's constructor takes after the row's
    own and before `ch` (parse_model appends the inputs' channels to the row's args); None: unchanged."""
    if not values:
        return None
    assert op.user is not None
    params = list(op.user.params)
    settable = params[len(args) : params.index("ch")] if "ch" in params else []
    wrong = [key for key in values if key not in settable]
    if wrong:
        raise OptionError(
            "--set",
            f"--set {wrong[0]}: {op.name}'s row gives {', '.join(params[: len(args)]) or 'nothing'} and parse_model "
            f"appends the inputs' channels (ch); --set takes the parameters between them: "
            f"{', '.join(settable) or 'none'}.",
        )
    last = max(settable.index(key) for key in values)
    defaults = {**op.user.defaults, **values}
    missing = [key for key in settable[:last] if key not in defaults]
    if missing:
        raise OptionError(
            "--set", f"--set {missing[0]} too: it comes before {settable[last]} in the row's args."
        )
    added = flow([defaults[key] for key in settable[: last + 1]], written)[1:-1]  # in the row's own style
    body = written[: written.rindex("]")].rstrip()
    return body + (", " if args else "") + added + written[len(body) :]


# --- --into: the operator inside a CSP block's bottlenecks ----------------------------------------------------


def apply_into(text: str, layers: str, options: ApplyOptions, into: str, name: str = "<yaml>") -> ApplyResult:
    """Rename the selected CSP rows (C3, C2f, C3k2) to `<CSP>_<NAME>`, keeping `from`, n and args, after
    checking that the operator fits the slot and gets channels it takes at every scale. `into` is the CSP
    block to use ("csp": the one each row already uses)."""
    op = options.op
    if any(options.op.defaults.get(k) != v for k, v in options.resolved.items()):
        raise YolopatchError(
            f"--into builds {op.name} with its defaults inside each bottleneck; options ({', '.join(options.values)}) "
            "are not supported with --into yet."
        )
    slot, why = slot_of(op)
    if slot is None:
        raise YolopatchError(f"--into: {why}; it cannot go inside a bottleneck.")
    model = parse_model_yaml(text, name)
    target = target_for(model.values)
    geos = geometries(model.values, target.rules, options.scale, options.registered)
    first = next(iter(geos.values()))
    refuse_bad_rows(model, first.rules, options.hints)
    blocks = first.rules.csp
    if into != "csp" and into not in blocks:
        raise OptionError(
            "--into",
            f"--into {into}: {first.rules.family}'s CSP blocks are {', '.join(blocks)}."
            if blocks
            else f"--into {into}: {first.rules.family} has no CSP block yolopatch fills (C3, C2f, C3k2); "
            "put the operator after the block with --insert instead.",
        )
    logical = model.logical_rows()
    sims = {scale: simulate(logical, geo, name, options.hints) for scale, geo in geos.items()}
    names = [o.name for o in (*OPERATORS.values(), *options.registered)]
    selection = select_layers(layers, model.layers)
    edits: list[Edit] = []
    changes: list[Change] = []
    rows = list(logical)
    notes: list[str] = []
    classes: list[str] = []
    for index in selection.indices:
        layer = model.layers[index]
        reason, variant = into_decision(layer, into, op, blocks, names, geos, sims)
        if reason is None:
            rows[index] = (layer.source, layer.number, variant, tuple(layer.args))
            edits.append(Edit(layer.module_span.start, layer.module_span.end, variant))
            changes.append(Change(index, "replaced", layer.module, f"{variant} ({slot} slot)"))
            classes.append(variant)
        elif reason.startswith("already") or index not in selection.explicit:
            notes.append(f"layer {index} ({layer.module}) left as it is: {reason}.")
        else:
            raise YolopatchError(f"{place_of(model, layer)}: cannot put {op.name} into it: {reason}.")
    if not changes and not any("already" in n for n in notes):
        raise YolopatchError(
            f"{name}: --layers {layers} selects no CSP row to put {op.name} into. " + " ".join(notes)
        )
    new_text = splice(text, edits)
    variants = {variant_name(csp, op.name) for csp in blocks}
    check = {
        s: replace(g, rules=with_variants(g.rules, variants, options.registered)) for s, g in geos.items()
    }
    verify(new_text, rows, check, name)
    written = classes[0] if classes else op.name
    return _result(text, new_text, changes, notes, target, written, [c.index for c in changes])


def _result(
    text: str,
    new_text: str,
    changes: Sequence[Change],
    notes: Sequence[str],
    target: Target,
    written: str,
    selected: Sequence[int],
) -> ApplyResult:
    return ApplyResult(
        original=text,
        text=new_text,
        changes=tuple(changes),
        notes=tuple(notes),
        target=target,
        written=written,
        selected=tuple(selected),
    )


@dataclass(frozen=True)
class Written:
    """What `apply` will do with a result: the file, the change (None: nothing to write), and why not."""

    path: Path
    change: FileChange | None
    skipped: str = ""  # why nothing is written ("" when something is)
    checkout: Path | None = None  # the checkout the file sits in, of any target


def apply_file(
    model: Path,
    layers: str,
    options: ApplyOptions,
    into: str | None,
    output: Path | None,
    in_place: bool,
    force: bool,
    dry: bool,
) -> tuple[ApplyResult, Written]:
    """`apply` on one file: the edit, and where it goes (STEM-CLASS.yaml beside the input by default)."""
    text = read_text(model)
    if into is not None:
        result = apply_into(text, layers, options, into, name=str(model))
    else:
        result = apply_operator(text, layers, options, name=str(model))
    suffix = model.suffix or ".yaml"
    path = model if in_place else output or model.with_name(f"{model.stem}-{result.written.lower()}{suffix}")
    written = _written(model, path, result.original, result.text, force, dry)
    # the checkout the file sits in, or one beside it: next-step text names it instead of a placeholder
    checkout = enclosing(path) or _beside(path, result.target)
    if options.op.head and written.change:
        result = replace(result, notes=(*result.notes, _proved(result, options, model, path, checkout)))
    return result, replace(written, checkout=checkout) if written.change else written


def _proved(
    result: ApplyResult, options: ApplyOptions, model: Path, path: Path, checkout: Path | None
) -> str:
    """A head is proved with the target's code at hand before anything is written (refused if it fails):
    the checkout next steps name (`checkout`), else the one the model sits in or one beside the written
    file or the model, else in the working folder."""
    target = result.target
    at_hand = (
        checkout
        or enclosing(model)
        or beside(path.parent, target)
        or beside(model.parent, target)
        or beside(Path.cwd(), target)
    )
    repo, unproven = head_code(target, at_hand)
    return unproven or prove_head(target, options.op, result.text, path, repo)


def _beside(path: Path, target: Target) -> Path | None:
    """A checkout of the family next to the written file or in the working folder (none for a family
    that `inject --installed` patches: that is where its next step points)."""
    if target.installable:
        return None
    return beside(path.parent, target) or beside(Path.cwd(), target)


def _written(model: Path, path: Path, original: str, text: str, force: bool, dry: bool) -> Written:
    """Where an edit of `model` goes: `path`, unless it exists with other contents (--force overwrites it),
    or nothing changes. Diffs compare with the input."""
    if path != model and path.exists() and not force and not dry:
        if read_text(path) == text:
            return Written(path, None, f"{path}: already up to date")
        raise YolopatchError(
            f"{path}: already exists. Pass --force to overwrite it, or -o to write elsewhere."
        )
    if text == original:
        return Written(path, None, f"{model}: already patched; nothing to change")
    return Written(path, FileChange(path, original, text, model))


def apply_files(
    model: Path, layers: str, options: ApplyOptions, force: bool, dry: bool
) -> tuple[ApplyResult, tuple[Variant, ...], list[Path], list[FileChange]]:
    """`apply --each`: one variant file per edited layer (STEM-OP-LN.yaml), all written or none."""
    combined, variants = apply_each(read_text(model), layers, options, name=str(model))
    stem, suffix = model.stem, model.suffix or ".yaml"
    paths = [model.with_name(f"{stem}-{options.op.name.lower()}-L{v.layer}{suffix}") for v in variants]
    changes = [
        FileChange(path, v.result.original, v.result.text, model)
        for path, v in zip(paths, variants, strict=True)
        if not (path.exists() and read_text(path) == v.result.text)
    ]
    clashes = [str(c.path) for c in changes if c.path.exists()]
    if clashes and not force and not dry:
        raise YolopatchError(
            f"{', '.join(clashes)}: already exist(s) with other contents. Pass --force to overwrite them."
        )
    return combined, variants, paths, changes


# --- model formats other than the yaml ---------------------------------------------------------------------------


def model_format(model: Path) -> ModelFormat | None:
    """The format plug-in a model file is in (None: a model yaml)."""
    return format_for(model)


def apply_format_file(
    model: Path,
    fmt: ModelFormat,
    layers: str,
    options: ApplyOptions,
    given: Sequence[str],
    output: Path | None,
    in_place: bool,
    force: bool,
    dry: bool,
) -> tuple[FormatResult, Written]:
    """`apply` on a file of another format: its own edit, written like a yaml's (STEM-OP.SUFFIX beside it)."""
    for option in given:
        if option in fmt.unsupported:
            raise OptionError(option, f"{option} does not apply to a {fmt.name} file ({model}).")
    request = FormatRequest(options.op, options.resolved, options.insert, options.rewire)
    result = fmt.apply(read_text(model), layers, request, str(model))
    path = (
        model
        if in_place
        else output or model.with_name(f"{model.stem}-{result.written.lower()}{model.suffix}")
    )
    return result, _written(model, path, result.original, result.text, force, dry)
