"""How a probed block's output size follows its input's: a fixed stride, a stride argument or an
upsampling factor; pure code over the probe's observations (`learn.fit` calls it).

A stride or upsampling parameter that the probe shows to change nothing (an upsampler hard-wired to x2
whose `scale_factor` is ignored) is no size argument: the block has a fixed stride, and the parameter is an
ordinary option, with that evidence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.trials import SIZES

FIXED = (Fraction(1), Fraction(2), Fraction(1, 2))
_UP_SIZE = 8  # the upsampling trials' input size


@dataclass(frozen=True)
class SizeRule:
    """The rule's stride part, its evidence, and a stride or upsampling parameter shown to do nothing."""

    stride: str
    evidence: str
    ignored: str | None = None


def size_rule(
    where: str, roles: RoleMap, runs: Mapping[str, Any], out: Sequence[list[list[int]]]
) -> SizeRule:
    """The stride the observations prove, or a YolopatchError saying what did not fit."""
    base = _base_ratio(where, out)
    stride, up = roles.having("stride"), roles.having("up")
    sizes = [shape[2] for shape in out[0]]
    if stride:
        return _stride_argument(where, stride, runs, base, sizes, out)
    if up:
        return _upsampling_argument(where, up, runs, base, out)
    return SizeRule(_fixed(where, base), _evidence(_fixed(where, base), out))


def _base_ratio(where: str, out: Sequence[list[list[int]]]) -> Fraction:
    ratios = {Fraction(size, shape[2]) for size, shape in zip(SIZES, out[0], strict=True)}
    ratios |= {Fraction(size, shape[3]) for size, shape in zip(SIZES, out[0], strict=True)}
    if len(ratios) != 1:
        raise YolopatchError(
            f"{where}: its output size is not a fixed fraction of the input's ({sorted(ratios)})."
        )
    return ratios.pop()


def _fixed(where: str, base: Fraction) -> str:
    if base not in FIXED:
        raise YolopatchError(f"{where}: it divides the size by {base}; yolopatch knows strides 1, 2 and 1/2.")
    return str(base)


def _stride_argument(
    where: str,
    stride: str,
    runs: Mapping[str, Any],
    base: Fraction,
    sizes: list[int],
    out: Sequence[list[list[int]]],
) -> SizeRule:
    two = runs["stride2"]
    halved = "error" not in two and _sizes(two) == [size // 2 for size in SIZES]
    if base == 1 and halved:
        return SizeRule(f"arg:{stride}", _evidence(f"arg:{stride}", out))
    if "error" not in two and _sizes(two) == sizes:
        fixed = _fixed(where, base)
        shown = " and ".join(f"{s}x{s} -> {o}x{o}" for s, o in zip(SIZES, sizes, strict=True))
        return SizeRule(
            fixed,
            f"{stride} is ignored ({shown} at {stride}=1 and at {stride}=2): a fixed stride {fixed}, and {stride} an ordinary option",
            stride,
        )
    raise YolopatchError(
        f"{where}: {stride}=2 does not halve the size ({two.get('error') or _sizes(two)}); map "
        f"{stride}=- if it is not the stride."
    )


def _upsampling_argument(
    where: str, up: str, runs: Mapping[str, Any], base: Fraction, out: Sequence[list[list[int]]]
) -> SizeRule:
    built = [runs[f"up{f}"] for f in (2, 4)]
    sizes = [_sizes(run) for run in built]
    if sizes == [[2 * _UP_SIZE], [4 * _UP_SIZE]]:
        return SizeRule(f"up:{up}", _evidence(f"up:{up}", out))
    same = all("error" not in run for run in built) and sizes[0] == sizes[1] and len(sizes[0]) == 1
    if same and Fraction(_UP_SIZE, sizes[0][0]) == base:
        fixed = _fixed(where, base)
        size = sizes[0][0]
        return SizeRule(
            fixed,
            f"{up} is ignored ({_UP_SIZE}x{_UP_SIZE} -> {size}x{size} at {up}=2 and at {up}=4): a fixed "
            f"upsampling by {1 / base}, and {up} an ordinary option",
            up,
        )
    raise YolopatchError(
        f"{where}: {up}=2 and {up}=4 give sizes {sizes} from {_UP_SIZE}x{_UP_SIZE}; map {up}=- if it is not an "
        "upsampling factor."
    )


def _sizes(run: Mapping[str, Any]) -> list[int]:
    return [item["shape"][2] for item in run.get("outputs", []) if item.get("type") == "tensor"]


def _evidence(stride: str, out: Sequence[list[list[int]]]) -> str:
    sizes = " and ".join(f"{s}x{s} -> {shape[2]}x{shape[3]}" for s, shape in zip(SIZES, out[0], strict=True))
    if stride.startswith("arg:"):
        return f"stride from {stride[4:]} ({sizes} at 1; halved at 2)"
    if stride.startswith("up:"):
        return f"upsampling by {stride[3:]} (8x8 -> 16x16 at 2, 32x32 at 4)"
    return "size kept" + f" ({sizes})" if stride == "1" else f"stride {stride} ({sizes})"
