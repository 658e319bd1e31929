"""Fusion classes (their forward takes one list of maps: BiFPN, ASF, Gold-YOLO...): the probe's request,
and the fit of the rules from what the class did.

The probe feeds inputs that can be told apart: widths 24/40/56/72 (and the same widths rotated, so `sum`,
`first`, `last` and `input:K` never agree), equal widths 32 and 48 (with the output-channel argument 48 and
96, so `equal` and `arg:PARAM` never agree), two, three and four inputs, and three size patterns (all one
size, each half the previous's, each twice it). A rule is accepted only if it holds in every run that built
and ran; an input that gets no gradient does not count as taken. Then a width sweep at one accepted shape
finds a divisibility constraint. Pure code, like `learn` (the child is yolopatch/children/probe.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.userop.learn import Learned, constraints, refuse_unloaded, refuse_untrainable
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.rule import SIZE_PATTERNS, FusionRule, Rule, parse_fusion_rule
from yolopatch.userop.source import ClassSource
from yolopatch.userop.trials import WIDTHS

COUNTS = (2, 3, 4)
DISTINCT = (24, 40, 56, 72)
EQUAL = ((32, 48), (48, 96))  # (every input's width, the output-channel argument)
_SIZES = {"equal": (16, 16, 16, 16), "down": (32, 16, 8, 4), "up": (4, 8, 16, 32)}


def sizes_of(pattern: str, count: int) -> list[int]:
    sizes = _SIZES[pattern]
    return list(sizes[:count] if pattern != "up" else sizes[-count:])


@dataclass(frozen=True)
class _Shape:
    """One trial's inputs: widths, sizes, how the channels are passed, the output-channel argument."""

    count: int
    pattern: str
    widths: tuple[int, ...]
    form: str  # "list", "int" or "" (the class takes no channel argument)
    c2: int

    @property
    def name(self) -> str:
        return (
            f"{self.count}-{self.pattern}-{'-'.join(map(str, self.widths))}-{self.form or 'none'}-{self.c2}"
        )


def fusion_trials(roles: RoleMap, values: Mapping[str, Any]) -> dict[str, dict]:
    """Every shape the first probe builds, by name."""
    return {name: _request(shape, roles, values) for name, shape in _shapes(roles).items()}


def sweep_trials(roles: RoleMap, values: Mapping[str, Any], shape: _Shape) -> dict[str, dict]:
    """The width sweep at one shape the class takes: every input WIDTH channels (and the argument)."""
    return {
        f"width{width}": _request(
            _Shape(shape.count, shape.pattern, (width,) * shape.count, shape.form, width), roles, values
        )
        for width in WIDTHS
    }


def _request(shape: _Shape, roles: RoleMap, values: Mapping[str, Any]) -> dict[str, Any]:
    kwargs = dict(values)
    c1, c2 = roles.having("c1"), roles.having("c2")
    if c1:
        kwargs[c1] = list(shape.widths) if shape.form == "list" else shape.widths[0]
    if c2:
        kwargs[c2] = shape.c2
    sizes = sizes_of(shape.pattern, shape.count)
    return {
        "kwargs": kwargs,
        "inputs": [[w, s] for w, s in zip(shape.widths, sizes, strict=True)],
        "train": True,
    }


@dataclass(frozen=True)
class _Run:
    shape: _Shape
    observed: Mapping[str, Any]

    @property
    def ok(self) -> bool:
        grads = self.observed.get("input_grads")
        return "error" not in self.observed and "outputs" in self.observed and "none" not in (grads or [])

    @property
    def out(self) -> list[int]:
        return list(self.observed["outputs"][0]["shape"])


def first_shape(observed: Mapping[str, Any], roles: RoleMap) -> _Shape | None:
    """The first shape with equal widths the class took (for the width sweep); None: it took none."""
    if "trials" not in observed:
        return None
    runs = _runs(observed, roles)
    return next((run.shape for run in runs if run.ok and len(set(run.shape.widths)) == 1), None)


def _runs(observed: Mapping[str, Any], roles: RoleMap) -> list[_Run]:
    names = _shapes(roles)
    return [_Run(names[name], run) for name, run in observed["trials"].items() if name in names]


def _shapes(roles: RoleMap) -> dict[str, _Shape]:
    """Two, three and four inputs, at each size pattern: distinct widths in two orders, equal widths at two
    widths (the constructor given a list of widths, or one width, where it takes them)."""
    c1 = roles.having("c1")
    forms = ("list", "int") if c1 else ("",)
    found = {}
    for count in COUNTS:
        for pattern in SIZE_PATTERNS:
            distinct = DISTINCT[:count]
            for widths in (distinct, distinct[1:] + distinct[:1]):
                shape = _Shape(count, pattern, widths, forms[0], 48)
                found[shape.name] = shape
            for width, c2 in EQUAL:
                for form in forms:
                    shape = _Shape(count, pattern, (width,) * count, form, c2)
                    found[shape.name] = shape
    return found


def fit_fusion(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    observed: Mapping[str, Any],
    swept: Mapping[str, Any],
    declared: str | None = None,
) -> Learned:
    """The rules the observations prove, or a YolopatchError saying what did not fit and what to declare."""
    where = refuse_unloaded(source, observed)
    runs = _runs(observed, roles)
    _refuse_several_outputs(where, runs)
    good = [run for run in runs if run.ok]
    if not good:
        raise _nothing_ran(where, runs, roles)
    _refuse_changed_batch(where, good)
    form = "list" if any(r.shape.form == "list" for r in good) else good[0].shape.form
    good = [run for run in good if run.shape.form == form]
    counts = tuple(sorted({run.shape.count for run in good}))
    widths = "any" if any(len(set(r.shape.widths)) > 1 for r in good) else "equal"
    patterns = tuple(p for p in SIZE_PATTERNS if any(r.shape.pattern == p for r in good))
    out, out_evidence = _out_rule(where, good, roles, widths)
    size, size_evidence = _size_rule(where, good, patterns)
    rule = FusionRule(out, size, () if counts == COUNTS else counts, widths, patterns, form)
    if declared is not None:
        wanted = parse_fusion_rule(declared, tuple(p.name for p in source.params))
        if wanted != (out, size):
            raise YolopatchError(
                f"{where}: --rule {declared} does not hold: the probe shows {rule} ({out_evidence}; "
                f"{size_evidence}). Fix the declaration or the --map/--set the probe built it with."
            )
    train = next(run.observed for run in good)
    divisor, smallest, constraint = constraints(swept["trials"]) if "trials" in swept else (1, 1, "")
    evidence = [
        out_evidence,
        size_evidence,
        f"takes {rule.constraints()}" + _ignored(runs),
        refuse_untrainable(where, train, {r.shape.name: r.observed for r in runs}),
        constraint,
    ]
    return Learned(
        rule=Rule("fusion"),
        roles=dict(roles.roles),
        values=dict(values),
        divisor=divisor,
        min_channels=smallest,
        unused=tuple(train.get("no_grad", ())),
        evidence=tuple(e for e in evidence if e),
        parameters=train.get("params", 0),
        fusion=rule,
    )


def _refuse_several_outputs(where: str, runs: Sequence[_Run]) -> None:
    for run in runs:
        outputs = run.observed.get("outputs") or []
        if outputs and outputs[0]["type"] != "tensor":
            raise YolopatchError(
                f"{where} returns {outputs[0]['type']} of maps from a list of inputs: that is a backbone-like "
                "or head-like module, not a fusion class (one map out); `ops add` does not take it in this "
                "version."
            )
        if outputs and len(outputs[0]["shape"]) != 4:
            raise YolopatchError(
                f"{where} maps its inputs to shape {tuple(outputs[0]['shape'])}; a fusion row must return one "
                "4-D feature map with the batch kept."
            )


def _refuse_changed_batch(where: str, runs: Sequence[_Run]) -> None:
    bad = next((run for run in runs if run.out[0] != 1), None)
    if bad is not None:
        raise YolopatchError(f"{where} maps a batch of 1 to shape {tuple(bad.out)}; it must keep the batch.")


def _nothing_ran(where: str, runs: Sequence[_Run], roles: RoleMap) -> YolopatchError:
    first = runs[0].observed if runs else {}
    ignored = next((run for run in runs if "none" in (run.observed.get("input_grads") or [])), None)
    if ignored is not None:
        unused = [i for i, g in enumerate(ignored.observed["input_grads"]) if g == "none"]
        return YolopatchError(
            f"{where}: with {ignored.shape.count} inputs, input {unused[0]} gets no gradient (it is not used), "
            "and with every number of inputs probed (2, 3, 4) one is unused; a yaml row must feed it exactly "
            "what it reads."
        )
    return YolopatchError(
        f"{where}: no list of inputs the probe tried built and ran (2, 3 and 4 inputs; equal and different "
        f"widths and sizes); the first: {first.get('stage', 'build')} failed with {first.get('kwargs')}: "
        f"{first.get('error')}. Declare the roles with --map PARAM=c1|c2|- (c1: the list of input channels) or "
        "set options with --set PARAM=VALUE."
    )


def _ignored(runs: Sequence[_Run]) -> str:
    counts = sorted(
        {
            r.shape.count
            for r in runs
            if "none" in (r.observed.get("input_grads") or []) and "error" not in r.observed
        }
    )
    return f" (with {' or '.join(map(str, counts))} inputs one gets no gradient: not taken)" if counts else ""


def _candidates(count: int, c2: str | None) -> list[str]:
    """The output-channel rules, the most specific first where two agree on every run."""
    inputs = [f"input:{k}" for k in range(1, count)]
    return [
        *([f"arg:{c2}"] if c2 else []),
        "equal",
        "sum",
        "first",
        "last",
        *inputs,
        *[f"{m}*input:{k}" for m in (2, 3, 4) for k in range(count)],
    ]


def _holds(rule: str, run: _Run) -> bool:
    widths, out = list(run.shape.widths), run.out[1]
    if rule.startswith("arg:"):
        return out == run.shape.c2
    if rule == "equal":
        return len(set(widths)) == 1 and out == widths[0]
    probe = FusionRule(rule, "equal")
    try:
        return probe.output_channels(widths, None, None) == out
    except IndexError:
        return False


def _out_rule(where: str, runs: Sequence[_Run], roles: RoleMap, widths: str) -> tuple[str, str]:
    c2 = roles.having("c2")
    fewest = min(run.shape.count for run in runs)
    holding = [rule for rule in _candidates(fewest, c2) if all(_holds(rule, run) for run in runs)]
    if widths == "any":
        holding = [rule for rule in holding if rule != "equal"]
    if not holding:
        seen = "; ".join(f"{list(r.shape.widths)} in -> {r.out[1]} out" for r in runs[:3])
        raise YolopatchError(
            f"{where}: its output channels follow no fusion rule yolopatch has ({seen}); `ops add` knows sum, "
            "first, last, input:K, equal, arg:PARAM (an output-channel argument) and M*input:K. If a parameter "
            "is the output channels, declare it with --map PARAM=c2."
        )
    rule = holding[0]
    example = runs[0]
    shown = f"{list(example.shape.widths)} in -> {example.out[1]} out"
    if rule.startswith("arg:"):
        return (
            rule,
            f"out={rule}: the output has the {rule[4:]} asked ({shown} at {rule[4:]}={example.shape.c2})",
        )
    return rule, f"out={rule}: {shown}, in every order and number of inputs that built"


def _size_rule(where: str, runs: Sequence[_Run], patterns: Sequence[str]) -> tuple[str, str]:
    varied = [run for run in runs if run.shape.pattern != "equal"]
    if not varied:
        return "equal", "size=equal: it takes inputs of one size only, and keeps it"
    for k in range(min(run.shape.count for run in varied)):
        if all(run.out[2] == sizes_of(run.shape.pattern, run.shape.count)[k] for run in varied):
            example = varied[0]
            sizes = sizes_of(example.shape.pattern, example.shape.count)
            return f"input:{k}", f"size=input:{k}: inputs of sizes {sizes} -> {example.out[2]}"
    example = varied[0]
    raise YolopatchError(
        f"{where}: its output size is no input's (inputs of sizes {sizes_of(example.shape.pattern, example.shape.count)} "
        f"-> {example.out[2]}x{example.out[3]}); yolopatch knows size=input:K and size=equal."
    )
