"""`ops add`'s core: read the class, map its roles, probe it in a child, fit the rule from what it did.

The fit is pure: `fit(source, roles, values, observations)` turns the probe's observations into a `Learned`
or a YolopatchError that says what to declare. A rule is accepted only if it holds at every probe and
agrees with the role map; nothing is guessed: an output that follows no rule of the vocabulary is refused.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.source import ClassSource

CHANNEL_RULES = ("keep", "conv", "csp")
PROBE_SECONDS = 120
WIDTHS = (8, 12, 16, 18, 20, 24, 36, 40, 48, 64, 96, 128)  # tell apart divisors 2 to 64
DIVISORS = (64, 32, 16, 8, 4, 2)
_BASE = ((32, 48), (64, 96))  # (input channels, output channels) of the two base probes
_DOUBLE = ((32, 64), (64, 128))  # and again, for a class with a constraint that 48 and 96 do not meet
_SIZES = (16, 20)


@dataclass(frozen=True)
class Rule:
    """channels: keep | conv | csp. stride: "1", "2", "1/2" (fixed), "arg:NAME" (the constructor argument
    NAME is the stride) or "up:NAME" (NAME is the upsampling factor)."""

    channels: str
    stride: str = "1"

    def __str__(self) -> str:
        return self.channels if self.stride == "1" else f"{self.channels}:{self.stride}"

    @property
    def stride_param(self) -> str | None:
        return self.stride.split(":", 1)[1] if ":" in self.stride else None

    @property
    def fixed_stride(self) -> Fraction | None:
        return None if ":" in self.stride else Fraction(self.stride)

    @property
    def upsamples(self) -> bool:
        return self.stride.startswith("up:") or (self.fixed_stride is not None and self.fixed_stride < 1)


def parse_rule(text: str, source: ClassSource) -> Rule:
    """`--rule keep`, `conv:2`, `keep:1/2`, `conv:arg:stride`, `keep:up:scale`."""
    channels, _, stride = text.strip().partition(":")
    stride = stride or "1"
    ok = channels in CHANNEL_RULES
    if stride.startswith(("arg:", "up:")):
        ok = ok and source.param(stride.split(":", 1)[1]) is not None
    else:
        try:
            ok = ok and Fraction(stride) > 0 and stride in ("1", "2", "1/2", "4", "1/4")
        except (ValueError, ZeroDivisionError):
            ok = False
    if not ok:
        raise OptionError(
            "--rule",
            f"--rule {text}: write CHANNELS[:STRIDE]: CHANNELS keep, conv or csp; STRIDE 1, 2, 1/2 (fixed), "
            f"arg:PARAM (a constructor argument is the stride) or up:PARAM (an upsampling factor), PARAM one of "
            f"{', '.join(p.name for p in source.params) or 'none'}.",
        )
    return Rule(channels, stride)


@dataclass(frozen=True)
class Learned:
    rule: Rule
    roles: Mapping[str, str]  # the final map: a repeat count that is not one is "-"
    values: Mapping[str, Any]  # --set values
    divisor: int  # channels must be a multiple of it (1: any)
    min_channels: int  # the smallest width that built and ran (of those probed)
    unused: tuple[str, ...]  # parameters that got no gradient
    evidence: tuple[str, ...]
    parameters: int  # at the first base probe


# --- the probe's request ----------------------------------------------------------------------------------


def trials(roles: RoleMap, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, dict]:
    """What the child builds: two base widths (train mode at the first), the stride, upsampling and repeat
    arguments varied, and the widths that reveal a divisibility constraint."""
    c1, c2, n = roles.having("c1"), roles.having("c2"), roles.having("n")
    stride, up = roles.having("stride"), roles.having("up")

    def kwargs(cin: int, cout: int, **extra: Any) -> dict[str, Any]:
        built = dict(values)
        built.update({k: v for k, v in ((c1, cin), (c2, cout)) if k})
        if n:
            built.setdefault(n, 1)
        if stride:
            built[stride] = 1
        if up:
            built.setdefault(up, 2 if defaults.get(up) in (None, 1) else defaults[up])
        built.update(extra)
        return built

    made: dict[str, dict] = {}
    for i, (cin, cout) in enumerate(_BASE):
        made[f"w{cin}"] = {
            "kwargs": kwargs(cin, cout),
            "channels": cin,
            "sizes": list(_SIZES),
            "train": i == 0,
        }
        if c2:  # c2 tied to c1 (a keep block that takes an output-channel argument), or twice c1
            made[f"w{cin}double"] = {
                "kwargs": kwargs(cin, 2 * cin),
                "channels": cin,
                "sizes": list(_SIZES),
                "train": i == 0,
            }
            made[f"w{cin}same"] = {
                "kwargs": kwargs(cin, cin),
                "channels": cin,
                "sizes": list(_SIZES),
                "train": i == 0,
            }
    # the other trials vary one argument, with the output channels equal to the input's (valid either way)
    cin = _BASE[0][0]
    if stride:
        made["stride2"] = {"kwargs": kwargs(cin, cin, **{stride: 2}), "channels": cin, "sizes": list(_SIZES)}
    if up:
        for factor in (2, 4):
            made[f"up{factor}"] = {"kwargs": kwargs(cin, cin, **{up: factor}), "channels": cin, "sizes": [8]}
    if n:
        for count in (1, 2, 3):
            made[f"n{count}"] = {"kwargs": kwargs(cin, cin, **{n: count}), "channels": cin, "sizes": [8]}
    for width in WIDTHS:
        made[f"width{width}"] = {"kwargs": kwargs(width, width), "channels": width, "sizes": [_SIZES[0]]}
    return made


def probe(
    source: ClassSource,
    request_trials: Mapping[str, dict],
    sys_path: Sequence[str] = (),
    python: str | None = None,
    timeout: float = PROBE_SECONDS,
) -> dict[str, Any]:
    """Run the probe child on the user's file and return its observations."""
    request = {
        "file": str(source.path.resolve()),
        "class": source.name,
        "sys_path": list(sys_path),
        "trials": dict(request_trials),
    }

    def too_long() -> YolopatchError:
        return YolopatchError(
            f"{source.path}:{source.line}: probing {source.name} took longer than {timeout:g} s (the time "
            "limit); nothing was recorded. A class that sleeps, downloads or builds something huge at "
            "construction cannot be probed: declare what it needs with --set, or make it cheaper to build."
        )

    script = Path(__file__).parents[1] / "children" / "probe.py"  # run by path: not imported here
    with tempfile.TemporaryDirectory(prefix="yolopatch-probe-") as scratch:
        request_path = Path(scratch) / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        return child.call(
            script,
            [str(request_path)],
            f"{source.path}: the probe of {source.name}",
            python=python,
            timeout=timeout,
            extra={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
            on_timeout=too_long,
        )


# --- fitting ----------------------------------------------------------------------------------------------


def fit(
    source: ClassSource,
    roles: RoleMap,
    values: Mapping[str, Any],
    observed: Mapping[str, Any],
    declared: Rule | None = None,
) -> Learned:
    """The rule the observations prove, or a YolopatchError saying what did not fit and what to declare."""
    where = f"{source.path}:{source.line}: {source.name}"
    if "load" in observed:
        raise YolopatchError(f"{where}: importing the file failed: {observed['load']['error']}")
    runs = observed["trials"]
    base, pairs = [runs[f"w{cin}"] for cin, _ in _BASE], _BASE
    if roles.having("c2") and not all(_built_and_ran(r) for r in base):
        double = [runs[f"w{cin}double"] for cin, _ in _DOUBLE]
        if all(
            _built_and_ran(r) and _channels_of(r) == [c] * len(_SIZES)
            for r, (_, c) in zip(double, _DOUBLE, strict=True)
        ):
            base, pairs = double, _DOUBLE  # the output follows c2: 48 and 96 break a constraint (found below)
    tied = "" if pairs is _DOUBLE else _tied(roles, runs, base)
    if tied:
        base = [runs[f"w{cin}same"] for cin, _ in _BASE]
    for run in base:
        _refuse_failed(where, run, roles, source, values)
    out = [_single_output(where, run) for run in base]
    channels = "keep" if tied else _channel_rule(where, roles, out, source, pairs)
    stride = _stride_rule(where, roles, runs, out)
    final_roles = dict(roles.roles)
    repeat = roles.having("n")
    evidence = [tied or _channel_evidence(channels, pairs), _stride_evidence(stride, out)]
    if repeat:
        repeats, why = _repeats(runs)
        if channels == "conv" and repeats:
            channels = "csp"
        else:
            final_roles[repeat] = "-"
        if channels == "csp":
            evidence.append(why)
        elif channels == "keep":
            evidence.append(
                f"{repeat} is an ordinary option: a keep block has no output channels, so {repeat} is its own depth, not the yaml's repeat count"
            )
        else:
            evidence.append(f"{repeat} is an ordinary option ({why})")
    rule = Rule(channels, stride)
    if declared is not None and declared != rule:
        raise YolopatchError(
            f"{where}: --rule {declared} does not hold: the probe shows {rule} ({'; '.join(evidence)}). "
            "Fix the declaration or the --map/--set that the probe built it with."
        )
    train = base[0]
    if "error" in train:
        raise YolopatchError(f"{where}: {train['stage']} failed: {train['error']}; it cannot be trained.")
    divisor, smallest, constraint = _constraints(runs)
    if constraint:
        evidence.append(constraint)
    if train["params"] == 0 and _has_weights(runs):
        raise YolopatchError(
            f"{where}: built with 0 parameters at {train['kwargs']}; map its parameters with --map."
        )
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
    same = [runs[f"w{cin}same"] for cin, _ in _BASE]
    widths = [cin for cin, _ in _BASE]
    if not all(
        _built_and_ran(r) and _channels_of(r) == [c] * len(_SIZES) for r, c in zip(same, widths, strict=True)
    ):
        return ""
    failed = next((run for run in base if not _built_and_ran(run)), None)
    if failed is not None:
        how = f"with {c2} != the input channels, {failed['stage']} fails ({failed['error']})"
    elif all(_channels_of(r) == [c] * len(_SIZES) for r, c in zip(base, widths, strict=True)):
        how = f"{c2} does not set the output channels ({_BASE[0][1]} asked, {_BASE[0][0]} given)"
    else:
        return ""
    return f"keep, {c2} tied to the input channels: {how}; with {c2} = input, out = in at {widths[0]} and {widths[1]}"


def _refuse_failed(
    where: str, run: Mapping[str, Any], roles: RoleMap, source: ClassSource, values: Mapping[str, Any]
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
        f"{where}{called}: {run['stage']} failed with {run['kwargs']}: {run['error']}. Declare the roles "
        "with --map PARAM=c1|c2|n|stride|up|- or set options with --set PARAM=VALUE."
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


def _channel_rule(
    where: str,
    roles: RoleMap,
    out: Sequence[list[list[int]]],
    source: ClassSource,
    pairs: Sequence[tuple[int, int]] = _BASE,
) -> str:
    got = [[shape[1] for shape in run] for run in out]
    c2 = roles.having("c2")
    if all(g == [cin] * len(g) for g, (cin, _) in zip(got, pairs, strict=True)):
        if c2:
            raise YolopatchError(
                f"{where}: the role map gives the output channels to {c2}, but the output keeps the input's "
                f"channels ({pairs[0][1]} asked, {got[0][0]} given); map {c2}=- if it is not the output "
                "channel count, or --rule keep."
            )
        return "keep"
    if c2 and all(g == [cout] * len(g) for g, (_, cout) in zip(got, pairs, strict=True)):
        return "conv"
    seen = ", ".join(f"{g[0]} out at {cin} in" for g, (cin, _) in zip(got, pairs, strict=True))
    ratio = Fraction(got[0][0], pairs[0][0])
    how = (
        f" ({ratio}·c1)"
        if all(Fraction(g[0], cin) == ratio for g, (cin, _) in zip(got, pairs, strict=True))
        else ""
    )
    raise YolopatchError(
        f"{where}: its output channels follow no rule yolopatch has ({seen}{how}); `ops add` knows keep "
        "(output = input channels) and conv/csp (output = an output-channel argument). Modules such as "
        "ReOrg (4·c1) are not supported in this version."
        + (
            f" If one of ({', '.join(p.name for p in source.params)}) is the output channels, declare it with "
            "--map PARAM=c2."
            if source.params and not c2
            else ""
        )
    )


def _ratio(shape_in: int, shape_out: int) -> Fraction:
    return Fraction(shape_in, shape_out)


def _stride_rule(where: str, roles: RoleMap, runs: Mapping[str, Any], out: Sequence[list[list[int]]]) -> str:
    ratios = {_ratio(size, shape[2]) for size, shape in zip(_SIZES, out[0], strict=True)}
    ratios |= {_ratio(size, shape[3]) for size, shape in zip(_SIZES, out[0], strict=True)}
    if len(ratios) != 1:
        raise YolopatchError(
            f"{where}: its output size is not a fixed fraction of the input's ({sorted(ratios)})."
        )
    base = ratios.pop()
    stride, up = roles.having("stride"), roles.having("up")
    if stride and base == 1:
        two = runs["stride2"]
        if "error" not in two and _single_sizes(two) == [size // 2 for size in _SIZES]:
            return f"arg:{stride}"
        raise YolopatchError(
            f"{where}: {stride}=2 does not halve the size ({two.get('error') or _single_sizes(two)}); map "
            f"{stride}=- if it is not the stride."
        )
    if up:
        sizes = [_single_sizes(runs[f"up{f}"]) for f in (2, 4)]
        if sizes == [[16], [32]]:
            return f"up:{up}"
        raise YolopatchError(
            f"{where}: {up}=2 and {up}=4 give sizes {sizes} from 8x8; map {up}=- if it is not an upsampling factor."
        )
    if base not in (Fraction(1), Fraction(2), Fraction(1, 2)):
        raise YolopatchError(f"{where}: it divides the size by {base}; yolopatch knows strides 1, 2 and 1/2.")
    return str(base)


def _single_sizes(run: Mapping[str, Any]) -> list[int]:
    return [item["shape"][2] for item in run.get("outputs", []) if item.get("type") == "tensor"]


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


def _constraints(runs: Mapping[str, Any]) -> tuple[int, int, str]:
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


def _has_weights(runs: Mapping[str, Any]) -> bool:
    return any(run.get("params", 0) > 0 for run in runs.values())


def _channel_evidence(channels: str, pairs: Sequence[tuple[int, int]]) -> str:
    if channels == "keep":
        return f"keep: out = in at {pairs[0][0]} and {pairs[1][0]} channels"
    return f"conv: out = the output-channel argument ({pairs[0][1]} and {pairs[1][1]} asked and given)"


def _stride_evidence(stride: str, out: Sequence[list[list[int]]]) -> str:
    sizes = " and ".join(f"{s}x{s} -> {shape[2]}x{shape[3]}" for s, shape in zip(_SIZES, out[0], strict=True))
    if stride.startswith("arg:"):
        return f"stride from {stride[4:]} ({sizes} at 1; halved at 2)"
    if stride.startswith("up:"):
        return f"upsampling by {stride[3:]} (8x8 -> 16x16 at 2, 32x32 at 4)"
    return "size kept" + f" ({sizes})" if stride == "1" else f"stride {stride} ({sizes})"
