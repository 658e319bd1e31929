"""What yolopatch knows about one operator: the data every command reads, in one frozen dataclass.

No torch here: `apply`, `inject` and `ops` read specs without building anything. The class itself lives in
`yolopatch/templates/<template>.py`, real code that `check` imports and `inject` pastes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from yolopatch.errors import OptionError

Values = Mapping[str, Any]


@dataclass(frozen=True)
class Option:
    """One constructor argument after (c1, c2): its name, default, command-line spelling and check.

    `flag` is the long option (`--kernel`), shared by every operator that has the same kind of argument;
    `--set NAME` means it has no flag of its own. `short` is an optional one-letter alias (`-k`).
    `check` returns what is wrong with a value (None: fine); `parse` turns command-line text into a value.
    """

    name: str
    default: Any
    flag: str
    help: str
    parse: Callable[[str], Any] = int
    check: Callable[[Any], str | None] = lambda value: None
    short: str = ""

    @property
    def has_flag(self) -> bool:
        return not self.flag.startswith("--set")


@dataclass(frozen=True)
class Operator:
    """An operator yolopatch can write into yamls, inject into a target and build.

    - `yaml_args(channels, stride, values)`: the yaml row's args; `channels` is the first one.
    - `channel_problem(c1, values)`: why an operator with `c1` input channels cannot be built (None: fine).
    - `params(c1, c2, values)`: its parameter count.
    - `uncounted_macs(module, inputs, output)`: multiply-accumulates of weighted sums thop does not see
      (None when it has none); called from a forward hook on each instance.
    - `keeps_channels`: c2 must equal c1, so a replaced layer must keep its channels and resolution.
    - `channel_multiple`: c2 must equal this multiple of c1 (a down block's 2, ReOrg's 4; None: no such
      tie): a replaced layer must output that many at every scale, and it is never inserted.
    - `strided`: its third yaml argument is a stride (it may replace a strided layer).
    - `own_stride`: the stride it always has (None: set per row, as `strided` does, or by `stride_rule`);
      below 1 it upsamples. `stride_rule` reads a row's stride from its args where that is not the third.
    - `repeats`: parse_model gives it the row's repeat count (its class is in the repeat collection).
    - `user`: the record of a user's own module (`yolopatch ops add`); None for the built-ins.
    - `fusion`: the rules of a user's fusion class (yolopatch.userop.rule.FusionRule): its rows read several
      layers, its output channels and size follow them (None: it reads one map).
    - `backbone`: a user's backbone (yolopatch.userop.rule.BackboneSpec: its row returns a list of maps,
      registered by parse_model's backbone branch or a target's own TorchVision/Index one), or "index" for
      Index, which picks one of them.
    - `generated`: what inject pastes when it is not a template (`apply --into`'s CSP classes, the
      adapter class of a user's own module).
    """

    name: str
    summary: str
    paper: str  # authors, venue, year
    title: str
    url: str
    template: str
    options: tuple[Option, ...]
    yaml_args: Callable[[int, int | Fraction, Values], list[Any]]
    channel_problem: Callable[[int, Values], str | None]
    params: Callable[[int, int, Values], int]
    params_formula: str
    keeps_channels: bool
    channel_multiple: int | None = None
    strided: bool = False
    own_stride: Fraction | None = Fraction(1)
    stride_rule: Callable[[Sequence[Any]], Fraction | None] | None = None
    upsamples: bool = False  # its stride is an upsampling factor (own_stride below 1, or set per row)
    repeats: bool = False
    user: Any = None
    fusion: Any = None  # a user's fusion class: its FusionRule (its rows read a list of inputs)
    backbone: Any = None  # a backbone's BackboneSpec (its row returns a list of maps), or "index" (Index)
    head: str = ""  # a detection head: the target's class it subclasses and is registered with ("Detect")
    generated: Any = None  # a Paste yolopatch wrote for it (an --into CSP class, a user's adapter)
    uncounted_macs: Callable[[Any, tuple[Any, ...], Any], int] | None = None
    uncounted_note: str = ""
    defaults: Values = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "defaults", {o.name: o.default for o in self.options})
        if self.strided:
            object.__setattr__(self, "own_stride", None)

    def option(self, key: str) -> Option | None:
        """The option named `key` by its constructor name or its flag (without dashes)."""
        return next((o for o in self.options if key in (o.name, o.flag.lstrip("-"))), None)


def trailing_non_defaults(options: tuple[Option, ...], values: Values) -> list[Any]:
    """Option values up to the last one that differs from its default: the shortest args that say it."""
    written = [values[o.name] for o in options]
    while written and written[-1] == options[len(written) - 1].default:
        written.pop()
    return written


# what a value that a parser refuses should have been
_EXPECTED: dict[Callable[[str], Any], str] = {int: "not a whole number", float: "not a number"}


def resolve_values(op: Operator, given: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's option values: its defaults updated with `given` (keyed by option name or flag; text
    is parsed), each checked. Raises OptionError naming the operator and the option."""
    values = dict(op.defaults)
    for key, raw in given.items():
        option = op.option(key)
        if option is None:
            known = ", ".join(f"{o.flag} ({o.name})" for o in op.options) or "none"
            raise OptionError(key, f"{op.name} has no option {key!r}; its options: {known}.")
        try:
            value = option.parse(raw) if isinstance(raw, str) else raw
        except ValueError as exc:
            why = (
                _EXPECTED.get(option.parse)
                or (str(exc) if op.user is not None else "")
                or "not a valid value"
            )
            raise OptionError(option.flag, f"{op.name} {option.flag} {raw}: {why}.") from None
        problem = option.check(value)
        if problem:
            raise OptionError(option.flag, f"{op.name} {option.flag} {value}: {problem}.")
        values[option.name] = value
    return values


# --- pieces the channel-keeping attention operators share ---------------------------------------------------


def odd(value: int | None) -> str | None:
    return None if value is None or (value >= 1 and value % 2) else "must be odd and at least 1"


def at_least_one(value: int) -> str | None:
    return None if value >= 1 else "must be at least 1"


def reduction(default: int, what: str = "reduction ratio of the hidden layer") -> Option:
    return Option("r", default, "--reduction", what, check=at_least_one)


def kernel(default: int | None, what: str, **parsing: Any) -> Option:
    """A kernel size option: `--kernel` / `-k`, odd by default."""
    return Option("k", default, "--kernel", what, **{"check": odd, **parsing}, short="-k")


def keep_channel_args(options: tuple[Option, ...]) -> Callable[[int, int | Fraction, Values], list[Any]]:
    """yaml args of an operator that keeps its channels: C, then the options that differ from defaults."""
    return lambda channels, _stride, values: [channels, *trailing_non_defaults(options, values)]


def hidden_channels_problem(name: str) -> Callable[[int, Values], str | None]:
    """A bottleneck of c1 // r channels needs at least one."""

    def problem(c1: int, values: Values) -> str | None:
        if c1 // values["r"] < 1:
            return f"its {name} would see {c1} channels; {c1} // --reduction {values['r']} is 0: use --reduction {c1} or less"
        return None

    return problem
