"""What one case says about a user-module fixture that `yolopatch ops add FILE.py:CLASS` is tested against.

The fixture files live in tests/fixtures/user_modules/ and are our own small modules, written in the shapes
and with the parameter spellings that real user modules have. One Case per class (or per trap), in
tests/user_module_cases.py:

- ``channels``: the true channel rule. "keep" (output width == input width), "conv" (output width is the
  c2 argument), "csp" (conv whose n argument repeats an inner block), "N*c1" (output width is N times the
  input's at every width, N whole). None when the class must be refused.
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
- ``refusal``: why the class must be refused, one of "head", "several-tensors",
  "outside-vocabulary", "not-a-multiple", "backward-fails", "input-gradient", "not-a-module", "syntax",
  "unknown-class", "not-4d", "memory", "time". None for a class that must be learned.
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
    channels: str | None  # "keep" | "conv" | "csp" | "N*c1"; None when it must be refused
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
