"""`ops add`'s core: read the class, map its roles, probe it in a child, fit the rule from what it did.

The fit is pure: `fit(source, roles, values, observations)` turns the probe's observations into a `Learned`
or a YolopatchError that says what to declare. A rule is accepted only if it holds at every probe and
agrees with the role map; nothing is guessed: an output that follows no rule of the vocabulary is refused.
The rule itself is `rule.py`'s, the probe's request `trials.py`'s, the size part of the fit `sizes.py`'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.rule import CHANNEL_RULES, BackboneSpec, FusionRule, Rule, multiple_rule, parse_rule
from yolopatch.userop.sizes import size_rule
from yolopatch.userop.source import ClassSource
from yolopatch.userop.trials import BASE, DIVISORS, DOUBLE, PROBE_SECONDS, SIZES, WIDTHS, probe, trials

__all__ = ["CHANNEL_RULES", "PROBE_SECONDS", "Learned", "Rule", "fit", "parse_rule", "probe", "trials"]


@dataclass(frozen=True)
class Learned:
    rule: Rule
    roles: Mapping[str, str]  # the final map: a repeat count that is not one, an ignored size argument: "-"
    values: Mapping[str, Any]  # --set values
    divisor: int  # channels must be a multiple of it (1: any)
    min_channels: int  # the smallest width that built and ran (of those probed)
    unused: tuple[str, ...]  # parameters that got no gradient
    evidence: tuple[str, ...]
    parameters: int  # at the first base probe
    fusion: FusionRule | None = None  # a fusion class's rules (then `rule` is Rule("fusion"))
    backbone: BackboneSpec | None = None  # a backbone's outputs (then `rule` is Rule("backbone"))


def fit(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    observed: Mapping[str, Any],
    declared: Rule | None = None,
) -> Learned:
    """The rule the observations prove, or a YolopatchError saying what did not fit and what to declare."""
    where = refuse_unloaded(source, observed)
    runs = observed["trials"]
    base, pairs, tied = _base_runs(roles, runs)
    for run in base:
        _refuse_failed(where, run, roles, source, values, runs)
    out = [_single_output(where, run) for run in base]
    channels, channel_evidence = (
        ("keep", tied) if tied else _channel_rule(where, roles, out, source, pairs, runs)
    )
    size = size_rule(where, roles, runs, out)
    _refuse_multiplied_upsampling(where, channels, size.stride)
    final_roles = dict(roles.roles)
    if size.ignored:
        final_roles[size.ignored] = "-"
    channels, repeat_evidence = _repeat_role(channels, roles, runs, final_roles)
    evidence = [channel_evidence, size.evidence, repeat_evidence]
    rule = Rule(channels, size.stride)
    if declared is not None and declared != rule:
        raise YolopatchError(
            f"{where}: --rule {declared} does not hold: the probe shows {rule} ({'; '.join(e for e in evidence if e)}). "
            "Fix the declaration or the --map/--set that the probe built it with."
        )
    train = base[0]
    evidence.append(refuse_untrainable(where, train, runs))
    divisor, smallest, constraint = constraints(runs)
    evidence.append(constraint)
    return Learned(
        rule=rule,
        roles=final_roles,
        values=dict(values),
        divisor=divisor,
        min_channels=smallest,
        unused=tuple(train.get("no_grad", ())),
        evidence=tuple(e for e in evidence if e),
        parameters=train["params"],
    )


def refuse_unloaded(source: ClassSource, observed: Mapping[str, Any]) -> str:
    """Refuse a file the probe could not import, naming the line; else where messages about the class start."""
    if "load" in observed:
        line = observed["load"].get("line") or source.line
        raise YolopatchError(f"{source.path}:{line}: importing the file failed: {observed['load']['error']}")
    return f"{source.path}:{source.line}: {source.name}"


def _base_runs(
    roles: RoleMap, runs: Mapping[str, Any]
) -> tuple[list[Mapping[str, Any]], Sequence[tuple[int, int]], str]:
    """The two runs the rule is read from, the (input, output) channels asked of them, and the evidence of
    an output-channel argument tied to the input's ("" when it is not)."""
    base, pairs = [runs[f"w{cin}"] for cin, _ in BASE], BASE
    if roles.having("c2") and not all(_built_and_ran(r) for r in base):
        double = [runs[f"w{cin}double"] for cin, _ in DOUBLE]
        if all(
            _built_and_ran(r) and _channels_of(r) == [c] * len(SIZES)
            for r, (_, c) in zip(double, DOUBLE, strict=True)
        ):
            return double, DOUBLE, ""  # the output follows c2: 48 and 96 break a constraint (found later)
    tied = _tied(roles, runs, base)
    if tied:
        base = [runs[f"w{cin}same"] for cin, _ in BASE]
    return base, pairs, tied


def _channels_of(run: Mapping[str, Any]) -> list[int | None]:
    return [item.get("shape", [None, None])[1] for item in run.get("outputs", [])]


def _built_and_ran(run: Mapping[str, Any]) -> bool:
    return "error" not in run or run.get("stage") == "train forward and backward"


def _tied(roles: RoleMap, runs: Mapping[str, Any], base: Sequence[Mapping[str, Any]]) -> str:
    """Evidence that the output-channel argument must equal the input channels (a keep block that still
    takes one, as CoordAtt(inp, oup) does): with it different, the class fails or ignores it; with it equal,
    the output has the input's channels. "" when the observations do not show that."""
    c2 = roles.having("c2")
    if not c2:
        return ""
    same = [runs[f"w{cin}same"] for cin, _ in BASE]
    widths = [cin for cin, _ in BASE]
    if not all(
        _built_and_ran(r) and _channels_of(r) == [c] * len(SIZES) for r, c in zip(same, widths, strict=True)
    ):
        return ""
    failed = next((run for run in base if not _built_and_ran(run)), None)
    if failed is not None:
        how = f"with {c2} != the input channels, {failed['stage']} fails ({failed['error']})"
    elif all(_channels_of(r) == [c] * len(SIZES) for r, c in zip(base, widths, strict=True)):
        how = f"{c2} does not set the output channels ({BASE[0][1]} asked, {BASE[0][0]} given)"
    else:
        return ""
    return f"keep, {c2} tied to the input channels: {how}; with {c2} = input, out = in at {widths[0]} and {widths[1]}"


def _refuse_failed(
    where: str,
    run: Mapping[str, Any],
    roles: RoleMap,
    source: ClassSource,
    values: Mapping[str, Any],
    runs: Mapping[str, Mapping[str, Any]],
) -> None:
    if "error" not in run or run.get("stage") == "train forward and backward":
        return
    called = roles.describe(source, values)
    if run.get("kind") == "memory":
        raise YolopatchError(
            f"{where}{called} ran out of memory (the probe's limit) when built with {run['kwargs']}: a channel "
            "count probably went where it multiplies a size. Check the role map (--map PARAM=ROLE)."
        )
    raise YolopatchError(
        f"{where}{called}: {run['stage']} failed with {run['kwargs']}: {run['error']}.{_widths_that_work(runs)} "
        "Declare the roles with --map PARAM=c1|c2|n|stride|up|- or set options with --set PARAM=VALUE."
    )


def _widths_that_work(runs: Mapping[str, Mapping[str, Any]]) -> str:
    """What the width sweep (c1 = c2) saw, when some widths build: which, and the divisor they share."""
    ok = [w for w in WIDTHS if "error" not in runs.get(f"width{w}", {"error": ""})]
    if not ok:
        return ""
    divisor = math.gcd(*ok)
    shared = f" (all multiples of {divisor})" if divisor > 1 and len(ok) < len(WIDTHS) else ""
    return (
        f" With input = output channels it builds at {', '.join(map(str, ok))}{shared}, not at the widths the "
        "probe and most YOLO models use (32, 64): set values that fit them."
    )


def _single_output(where: str, run: Mapping[str, Any]) -> list[list[int]]:
    """The output shapes at each size; refuses several outputs, non-4-D ones and a changed batch."""
    shapes = []
    for item in run["outputs"]:
        if item["type"] != "tensor":
            kind = "several tensors" if item["type"] in ("tuple", "list") else f"a {item['type']}"
            raise YolopatchError(
                f"{where} returns {kind}; `ops add` takes blocks that return one feature map (modules "
                "with several outputs are not supported in this version)."
            )
        shape = item["shape"]
        if len(shape) != 4 or shape[0] != 1:
            raise YolopatchError(
                f"{where} maps a (1, C, H, W) input to shape {tuple(shape)}; a yaml block must return a 4-D "
                "feature map with the batch kept."
            )
        shapes.append(shape)
    return shapes


def _repeats(runs: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether `n` repeats a block: parameters grow by the same amount per step and a block list has n."""
    built = [runs[f"n{count}"] for count in (1, 2, 3)]
    counts = [run.get("params") for run in built]
    if any(c is None for c in counts):
        return False, "n=1, 2 or 3 did not build"
    steps = {counts[1] - counts[0], counts[2] - counts[1]}  # type: ignore[operator]
    listed = all(count in set(run.get("blocks", [])) for count, run in zip((1, 2, 3), built, strict=True))
    if len(steps) == 1 and steps.pop() > 0 and listed:
        return True, f"n repeats a block: {counts[0]}, {counts[1]}, {counts[2]} parameters at n=1, 2, 3"
    return False, f"n=1, 2, 3 give {counts[0]}, {counts[1]}, {counts[2]} parameters, not n copies of a block"


def constraints(runs: Mapping[str, Any]) -> tuple[int, int, str]:
    """The divisor the widths that worked share and those that failed lack, and the smallest that worked."""
    ok = [w for w in WIDTHS if "error" not in runs[f"width{w}"]]
    failed = [w for w in WIDTHS if w not in ok]
    if not ok:
        return 1, WIDTHS[-1], ""
    if not failed:
        return 1, WIDTHS[0], ""
    for divisor in DIVISORS:
        if all(w % divisor == 0 for w in ok) and all(w % divisor for w in failed):
            example = failed[-1]
            error = runs[f"width{example}"].get("error", "")
            return divisor, ok[0], f"channels must be divisible by {divisor}: at {example} it fails ({error})"
    if max(failed) < min(ok):
        example = failed[-1]
        error = runs[f"width{example}"].get("error", "")
        return 1, min(ok), f"channels must be at least {min(ok)}: at {example} it fails ({error})"
    return (
        1,
        min(ok),
        (
            f"it fails at {', '.join(map(str, failed))} channels and works at {', '.join(map(str, ok))}, which no "
            "divisor explains; yolopatch cannot check this at every scale"
        ),
    )


def _channel_rule(
    where: str,
    roles: RoleMap,
    out: Sequence[list[list[int]]],
    source: ClassSource,
    pairs: Sequence[tuple[int, int]],
    runs: Mapping[str, Any],
) -> tuple[str, str]:
    """keep, conv or N*c1 with its evidence, or the refusal of an output that follows none of them."""
    got = [[shape[1] for shape in run] for run in out]
    c2 = roles.having("c2")
    widths = f"{pairs[0][0]} and {pairs[1][0]}"
    if all(g == [cin] * len(g) for g, (cin, _) in zip(got, pairs, strict=True)):
        if c2:
            raise YolopatchError(
                f"{where}: the role map gives the output channels to {c2}, but the output keeps the input's "
                f"channels ({pairs[0][1]} asked, {got[0][0]} given); map {c2}=- if it is not the output "
                "channel count, or --rule keep."
            )
        return "keep", f"keep: out = in at {widths} channels"
    if c2 and all(g == [cout] * len(g) for g, (_, cout) in zip(got, pairs, strict=True)):
        return (
            "conv",
            f"conv: out = the output-channel argument ({pairs[0][1]} and {pairs[1][1]} asked and given)",
        )
    ratio = _ratio(got, pairs)
    if ratio is not None and ratio.denominator == 1 and ratio >= 2:
        return _multiple(where, int(ratio), c2, widths, runs)
    raise _outside_vocabulary(where, got, pairs, ratio, source, c2)


def _ratio(got: Sequence[list[int]], pairs: Sequence[tuple[int, int]]) -> Fraction | None:
    """The one multiple of the input channels that every base output has (None: there is none)."""
    ratio = Fraction(got[0][0], pairs[0][0])
    same = all(g == [ratio * cin] * len(g) for g, (cin, _) in zip(got, pairs, strict=True))
    return ratio if same else None


def _multiple(
    where: str, multiple: int, c2: str | None, widths: str, runs: Mapping[str, Any]
) -> tuple[str, str]:
    """N*c1, once the width sweep shows it at every width that built."""
    built = [w for w in WIDTHS if "error" not in runs[f"width{w}"]]
    wrong = [
        (w, _channels_of(runs[f"width{w}"]))
        for w in built
        if _channels_of(runs[f"width{w}"]) != [multiple * w]
    ]
    if wrong:
        width, channels = wrong[0]
        raise YolopatchError(
            f"{where}: out = {multiple}·c1 at {widths} channels, but {channels[0] if channels else 'none'} at "
            f"{width}: its output channels are no fixed multiple of the input's at every width, so no yaml "
            "argument reproduces them at every scale."
        )
    ignored = f"; {c2} does not set them" if c2 else ""
    return multiple_rule(multiple), (
        f"{multiple_rule(multiple)}: out = {multiple}·in at {widths} channels and at every width that built "
        f"({', '.join(map(str, built))}){ignored}"
    )


def _outside_vocabulary(
    where: str,
    got: Sequence[list[int]],
    pairs: Sequence[tuple[int, int]],
    ratio: Fraction | None,
    source: ClassSource,
    c2: str | None,
) -> YolopatchError:
    seen = ", ".join(f"{g[0]} out at {cin} in" for g, (cin, _) in zip(got, pairs, strict=True))
    how = f" ({ratio}·c1)" if ratio is not None else ""
    declare = (
        f" If one of ({', '.join(p.name for p in source.params)}) is the output channels, declare it with "
        "--map PARAM=c2."
        if source.params and not c2
        else ""
    )
    return YolopatchError(
        f"{where}: its output channels follow no rule yolopatch has ({seen}{how}); `ops add` knows keep "
        "(output = input channels), conv/csp (output = an output-channel argument) and N*c1 (a whole multiple "
        f"of the input channels, 2*c1)." + declare
    )


def _refuse_multiplied_upsampling(where: str, channels: str, stride: str) -> None:
    rule = Rule(channels, stride)
    if rule.multiple and rule.upsamples:
        raise YolopatchError(
            f"{where}: it multiplies its channels ({channels}) and upsamples; an upsampler replaces an "
            "nn.Upsample row, which keeps its channels, so yolopatch has no row it may replace."
        )


def _repeat_role(
    channels: str, roles: RoleMap, runs: Mapping[str, Any], final_roles: dict[str, str]
) -> tuple[str, str]:
    """A conv block whose `n` repeats a block is csp; any other `n` is an ordinary option ("-")."""
    repeat = roles.having("n")
    if not repeat:
        return channels, ""
    repeats, why = _repeats(runs)
    if channels == "conv" and repeats:
        return "csp", why
    final_roles[repeat] = "-"
    if channels != "conv":
        return channels, (
            f"{repeat} is an ordinary option: a {channels} block has no output channels, so {repeat} is its own "
            "depth, not the yaml's repeat count"
        )
    return channels, f"{repeat} is an ordinary option ({why})"


def refuse_untrainable(where: str, train: Mapping[str, Any], runs: Mapping[str, Any]) -> str:
    """Refuse a block that cannot be trained; a block without weights is judged by its input's gradient
    (it must reach the input, finite). Returns that evidence ("" for a block with weights)."""
    if "error" in train:
        raise YolopatchError(f"{where}: {train['stage']} failed: {train['error']}; it cannot be trained.")
    if train.get("params"):
        return ""
    if _has_weights(runs):
        raise YolopatchError(
            f"{where}: built with 0 parameters at {train['kwargs']}; map its parameters with --map."
        )
    gradient = train.get("input_grad")
    if gradient == "finite":
        return "no weights: the gradient reaches its input, finite"
    how = (
        "the gradient it passes back to its input is not finite (NaN or inf)"
        if gradient == "not finite"
        else "no gradient reaches its input"
    )
    raise YolopatchError(
        f"{where} has no weights, and {how}: the layers before it could not learn through it; it cannot be "
        "trained."
    )


def _has_weights(runs: Mapping[str, Any]) -> bool:
    return any(run.get("params", 0) > 0 for run in runs.values())
