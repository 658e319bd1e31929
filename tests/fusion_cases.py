"""What each of our fusion test classes (tests/fixtures/user_modules/fusion.py) really does, checked by
building it: the rules `ops add` must learn, or the words its refusal must hold. Each class takes a list
of maps, as a yaml row with a `from` list feeds it."""

from __future__ import annotations

from dataclasses import dataclass

from user_module_case import USER_MODULES


@dataclass(frozen=True)
class FusionCase:
    id: str
    cls: str
    out: str | None  # sum | first | last | input:K | equal | arg:PARAM | M*input:K; None: refused
    size: str | None = None  # input:K | equal
    counts: tuple[int, ...] = ()  # the numbers of inputs it takes (empty: any)
    widths: str = "any"  # or "equal"
    sizes: tuple[str, ...] = ("equal", "down", "up")
    channels_as: str = "list"  # how its constructor takes the inputs' channels: list, int, "" (not)
    refusal: str = ""  # words the refusal holds
    note: str = ""

    @property
    def spec(self) -> str:
        return f"{USER_MODULES / 'fusion.py'}:{self.cls}"


CASES = [
    FusionCase(
        "weighted-concat",
        "WeightedConcat",
        "sum",
        "equal",
        (2, 3),
        sizes=("equal",),
        channels_as="",
        note="three weights: a fourth input fails; torch.cat needs one size",
    ),
    FusionCase(
        "weighted-add",
        "WeightedAdd",
        "arg:c2",
        "equal",
        (2,),
        "equal",
        ("equal",),
        "int",
        note="reads x[0] and x[1] only: with 3 or 4 inputs one gets no gradient, so 2 is all it takes",
    ),
    FusionCase(
        "zoom-cat",
        "ZoomCat",
        "sum",
        "input:1",
        (3,),
        channels_as="",
        note="ASF-YOLO: unpacks three; pools and upsamples to the middle one",
    ),
    FusionCase(
        "simfusion",
        "SimFusion3",
        "arg:out_channels",
        "input:1",
        (3,),
        note="Gold-YOLO: in_channel_list and out_channels",
    ),
    FusionCase(
        "sdi",
        "SDILike",
        "first",
        "input:0",
        note="SDI: every input to the first's width; forks book the previous row's channels instead",
    ),
    FusionCase(
        "cgafusion",
        "CGAFusionLike",
        "equal",
        "equal",
        (2,),
        "equal",
        ("equal",),
        "int",
        note="one width dim for both inputs",
    ),
    FusionCase(
        "last-up",
        "LastUp",
        "first",
        "input:0",
        (2,),
        note="reads x[0] and x[-1]: with three inputs the middle one gets no gradient",
    ),
    FusionCase(
        "pick-second", "PickSecond", "input:1", "input:1", note="the order trap: input 1, not first or last"
    ),
    FusionCase("double-first", "DoubleFirst", "2*input:0", "input:0", note="a fixed multiple of one input"),
    FusionCase(
        "up-add",
        "UpAdd",
        "arg:c2",
        "input:0",
        (2,),
        "equal",
        ("down",),
        "int",
        note="BiFPN top-down node: a fixed x2 upsample, so input 1 must be half input 0's size",
    ),
    FusionCase("two-tensors", "TwoTensors", None, refusal="YOLO passes one list", note="ASFF_3(x1, x2, x3)"),
    FusionCase("list-out", "ListOut", None, refusal="backbone-like", note="a list in, a list out"),
    FusionCase(
        "largest",
        "Largest",
        None,
        refusal="output size is no input's",
        note="the largest input's size, whichever position it has",
    ),
]
