"""The truth about every user-module fixture that `yolopatch ops add FILE.py:CLASS` is tested against.

The fixture files live in tests/fixtures/user_modules/ and are our own small modules, written in the shapes
and with the parameter spellings that real user modules have. One Case per class (or per trap):

- ``channels``: the true channel rule. "keep" (output width == input width), "conv" (output width is the
  c2 argument), "csp" (conv whose n argument repeats an inner block). None when the class must be refused.
- ``stride``: the true spatial rule. "1", "2", "1/2" (fixed: same size, half size, twice the size),
  "arg:NAME" (stride given by constructor argument NAME, the class's default when not given), "up:NAME"
  (upsampling by constructor argument NAME: the output is H * NAME by W * NAME). None when refused.
- ``needs_set``: constructor parameters without defaults that are neither channel nor n parameters; the
  user must give them with ``--set NAME=VALUE``. ``set_values`` are values that make the class work.
- ``roles``: the true role of every constructor parameter: "c1" (input width; for a head, its tuple of
  input widths), "c2" (output width), "n" (a CSP repeat count that a yaml row's repeats may scale),
  "stride" (the parameter that sets the spatial rule named in ``stride``, for "arg:" and "up:"), "-" (an
  ordinary option, including a parameter called n that is the block's own depth). Refused cases list their
  roles too where the signature can be read, for information.
- ``refusal``: why the class must be refused, one of "multi-input", "head", "several-tensors",
  "outside-vocabulary", "backward-fails", "not-a-module", "syntax", "unknown-class", "not-4d", "memory",
  "time". None for a class that must be learned.
- ``constraint``: "divisible:K" when the width must be a multiple of K (any other width raises in forward).
- ``unused_params``: the class owns parameters that never receive a gradient.
- ``imports_target``: "ultralytics" or "yolov5" when the file imports from that target, so it can only be
  probed with that target on the path.
- ``note``: the trap the case represents.

Every working case was checked with c1=64 (c2=128 and n=2 where they apply) plus ``set_values``, on a
(2, 64, 16, 16) input, in eval and in train mode with a backward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

USER_MODULES = Path(__file__).parent / "fixtures" / "user_modules"


@dataclass(frozen=True)
class Case:
    id: str  # pytest id
    file: str  # file name under tests/fixtures/user_modules/
    cls: str  # class name
    channels: str | None  # "keep" | "conv" | "csp"; None when it must be refused
    stride: str | None  # "1", "2", "1/2", "arg:NAME", "up:NAME"; None when refused
    needs_set: tuple[str, ...] = ()  # params without defaults, not channel/n params, given with --set
    set_values: dict = field(default_factory=dict)  # values that make it work
    roles: dict = field(default_factory=dict)  # param -> "c1" | "c2" | "n" | "stride" | "-"
    refusal: str | None = None  # see the module docstring
    constraint: str | None = None  # e.g. "divisible:8"
    unused_params: bool = False  # owns parameters that never get a gradient
    imports_target: str | None = None  # "ultralytics" | "yolov5"
    note: str = ""  # the trap it represents

    @property
    def path(self) -> Path:
        return USER_MODULES / self.file

    @property
    def spec(self) -> str:
        """The FILE.py:CLASS argument of `ops add`."""
        return f"{self.path}:{self.cls}"


CASES: tuple[Case, ...] = (
    # --- learned: an output-channel argument that is not free ---------------------------------------------
    Case(
        "coordatt-inp-oup",
        "tied.py",
        "CoordAttIO",
        "keep",
        "1",
        roles={"inp": "c1", "oup": "c2", "reduction": "-"},
        note="takes (inp, oup) but only works with oup == inp: a keep block, oup tied to the input",
    ),
    Case(
        "ignores-c2",
        "tied.py",
        "IgnoresC2",
        "keep",
        "1",
        roles={"c1": "c1", "c2": "c2"},
        note="YOLO's (c1, c2) signature, c2 never used: a keep block",
    ),
    Case(
        "grouped-conv",
        "tied.py",
        "GroupedConv",
        "conv",
        "1",
        roles={"c1": "c1", "c2": "c2", "groups": "-"},
        constraint="divisible:32",
        note="c2 = 48 fails (GroupNorm of 32 groups), 64 works: a conv block with a constraint, not a keep one",
    ),
    Case(
        "seam-like-c2-n",
        "signatures.py",
        "SEAMLike",
        "keep",
        "1",
        needs_set=("n",),
        set_values={"n": 1},
        roles={"c1": "c1", "c2": "c2", "n": "-", "reduction": "-"},
        note="(c1, c2, n) with c2 reset to c1 and n its own depth without a default: keep, n asked for",
    ),
    Case(
        "strided-kernel-conv",
        "signatures.py",
        "StridedKernelConv",
        "conv",
        "arg:stride",
        needs_set=("kernel_size",),
        set_values={"kernel_size": 3},
        roles={"in_channel": "c1", "out_channel": "c2", "kernel_size": "-", "stride": "stride"},
        note="kernel_size and stride without defaults: kernel_size asked for, the stride from the row",
    ),
    # --- learned: channel-keeping attention -------------------------------------------------------------
    Case(
        "se-attention",
        "se_attention.py",
        "SEAttention",
        "keep",
        "1",
        roles={"channel": "c1", "reduction": "-"},
        note="first param is `channel` with a default; given (64, 96) positionally, reduction=96 makes a hidden width of 0 and 0 parameters",
    ),
    Case(
        "seam",
        "attention.py",
        "SEAM",
        "keep",
        "1",
        roles={"c1": "c1", "n": "-", "reduction": "-"},
        note="`n` is the block's own depth (n depthwise steps), not a csp repeat; given (64, 96) it builds 96 steps",
    ),
    Case(
        "triplet-attention",
        "attention.py",
        "TripletAttention",
        "keep",
        "1",
        roles={"no_spatial": "-"},
        note="no channel parameter at all; its only parameter is a bool",
    ),
    Case(
        "ema",
        "attention.py",
        "EMA",
        "keep",
        "1",
        roles={"channels": "c1", "factor": "-"},
        constraint="divisible:8",
        note="reshapes into `factor` groups: 36 channels build, then forward raises",
    ),
    Case(
        "mhsa",
        "attention.py",
        "MHSA",
        "keep",
        "1",
        roles={"dim": "c1", "heads": "-"},
        constraint="divisible:4",
        note="width called `dim`; forward raises unless dim % heads == 0 (36 is divisible by 4: 34 fails)",
    ),
    Case(
        "gated-se",
        "attention.py",
        "GatedSE",
        "keep",
        "1",
        roles={"channels": "c1", "reduction": "-"},
        unused_params=True,
        note="owns an nn.Parameter and a Conv2d that forward never uses: they get no gradient",
    ),
    # --- learned: convolutions that set the width --------------------------------------------------------
    Case(
        "odconv",
        "convs.py",
        "ODConv2d",
        "conv",
        "arg:stride",
        needs_set=("kernel_size",),
        set_values={"kernel_size": 3},
        roles={
            "in_planes": "c1",
            "out_planes": "c2",
            "kernel_size": "-",
            "stride": "stride",
            "padding": "-",
            "reduction": "-",
            "kernel_num": "-",
        },
        note="widths called in_planes/out_planes; kernel_size has no default; padding None means kernel_size // 2",
    ),
    Case(
        "akconv",
        "convs.py",
        "AKConv",
        "conv",
        "arg:stride",
        needs_set=("num_param",),
        set_values={"num_param": 5},
        roles={"inc": "c1", "outc": "c2", "num_param": "-", "stride": "stride"},
        note="widths called inc/outc; num_param has no default and sets the weight shape",
    ),
    Case(
        "spdconv",
        "convs.py",
        "SPDConv",
        "conv",
        "2",
        roles={"c1": "c1", "c2": "c2"},
        note="stride 2 with no stride parameter (space-to-depth); H and W must be even",
    ),
    Case(
        "context-down",
        "convs.py",
        "ContextDown",
        "keep",
        "2",
        roles={"c1": "c1"},
        note="keeps its width but halves the resolution, with no stride parameter",
    ),
    Case(
        "conv-bn-act",
        "csp.py",
        "ConvBNAct",
        "conv",
        "arg:s",
        roles={"c1": "c1", "c2": "c2", "k": "-", "s": "stride", "p": "-", "g": "-", "act": "-"},
        note="the helper of C2fLite, itself a plain conv whose stride is called `s`",
    ),
    # --- learned: upsamplers ----------------------------------------------------------------------------
    Case(
        "dysample",
        "resample.py",
        "DySample",
        "keep",
        "up:scale",
        roles={"in_channels": "c1", "scale": "stride"},
        note="keeps its width and upsamples by `scale` (grid_sample of learned offsets)",
    ),
    Case(
        "carafe",
        "resample.py",
        "CARAFE",
        "conv",
        "up:scale",
        roles={"c1": "c1", "c2": "c2", "scale": "stride", "k_up": "-"},
        note="sets the width to c2 and upsamples by `scale`",
    ),
    # --- learned: csp -----------------------------------------------------------------------------------
    Case(
        "c2f-lite",
        "csp.py",
        "C2fLite",
        "csp",
        "1",
        roles={"c1": "c1", "c2": "c2", "n": "n", "shortcut": "-", "e": "-"},
        note="n repeats the bottleneck; needs the module-level autopad, ConvBNAct and LiteBottleneck",
    ),
    # --- learned: needs a target on the path ------------------------------------------------------------
    Case(
        "ultra-conv-gate",
        "ultra_import.py",
        "ConvGate",
        "conv",
        "1",
        roles={"c1": "c1", "c2": "c2", "k": "-"},
        imports_target="ultralytics",
        note="imports ultralytics.nn.modules.conv.Conv: probe only with ultralytics importable",
    ),
    Case(
        "v5-conv-gate",
        "v5_import.py",
        "ConvGateV5",
        "conv",
        "1",
        roles={"c1": "c1", "c2": "c2", "k": "-"},
        imports_target="yolov5",
        note="imports models.common.Conv: probe only with a YOLOv5 checkout on the path",
    ),
    # --- refused ----------------------------------------------------------------------------------------
    Case(
        "broken-backward",
        "refusals.py",
        "BrokenBackward",
        None,
        None,
        roles={"c1": "c1"},
        refusal="backward-fails",
        note="keeps its width and forward works; backward raises RuntimeError from a custom autograd.Function",
    ),
    Case(
        "flatten-out",
        "refusals.py",
        "FlattenOut",
        None,
        None,
        roles={"c1": "c1"},
        refusal="not-4d",
        note="returns (B, C, H*W)",
    ),
    Case(
        "add-fusion",
        "refusals.py",
        "AddFusion",
        None,
        None,
        roles={"c1": "c1", "c2": "c2"},
        refusal="multi-input",
        note="forward(self, xs) sums xs[0] and xs[1]; fed one 4-D tensor it returns a 3-D tensor instead of raising",
    ),
    Case(
        "tiny-head",
        "refusals.py",
        "TinyHead",
        None,
        None,
        roles={"nc": "-", "ch": "c1"},
        refusal="head",
        note="(nc, ch) signature, a list in and a list out; with the default ch=() it returns []",
    ),
    Case(
        "two-out",
        "refusals.py",
        "TwoOut",
        None,
        None,
        roles={"c1": "c1"},
        refusal="several-tensors",
        note="returns a tuple of two 4-D tensors of the input's shape",
    ),
    Case(
        "reorg-like",
        "refusals.py",
        "ReOrgLike",
        None,
        None,
        refusal="outside-vocabulary",
        note="no parameters at all; 4 * c1 channels at stride 2, neither keep nor conv",
    ),
    Case(
        "not-a-module",
        "refusals.py",
        "NotAModule",
        None,
        None,
        roles={"c1": "c1", "c2": "c2"},
        refusal="not-a-module",
        note="plain class with c1, c2, forward and __call__, but no nn.Module base",
    ),
    Case(
        "syntax",
        "broken_syntax.py",
        "Broken",
        None,
        None,
        refusal="syntax",
        note="line 14 (`def forward(self, x)`) lacks its colon: ast.parse raises SyntaxError there",
    ),
    Case(
        "unknown-class",
        "se_attention.py",
        "NoSuchClass",
        None,
        None,
        refusal="unknown-class",
        note="the file parses and defines SEAttention only",
    ),
    Case(
        "memory-hog",
        "hazards.py",
        "MemoryHog",
        None,
        None,
        roles={"c1": "c1", "c2": "c2"},
        refusal="memory",
        note="__init__ allocates torch.zeros(c1, c2, 4096, 4096): about 275 GB of float32 at 64 x 64",
    ),
    Case(
        "sleepy",
        "hazards.py",
        "Sleepy",
        None,
        None,
        roles={"c1": "c1"},
        refusal="time",
        note="__init__ sleeps for an hour",
    ),
)
