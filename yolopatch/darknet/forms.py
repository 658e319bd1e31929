"""How an operator is written in a cfg: in darknet's own layers where darknet has them, else as a section of
its own type that only a PyTorch codebase with the operator injected builds.

Native forms (darknet trains them; OpenCV's darknet reader knows these types):
- SE: `[avgpool]`, a 1x1 `[convolutional]` to C//r (the model's own hidden activation), a 1x1
  `[convolutional]` back to C with `activation=logistic`, and `[scale_channels] from=-4`, the form of
  darknet's own EfficientNet cfgs. Both convolutions have biases and no batch norm, as the SE class.
- SAM (YOLOv4's modified, point-wise one): a 1x1 `[convolutional]` to C with `batch_normalize=1` and
  `activation=logistic`, then `[sam] from=-2`, the form of darknet's own yolov4 SAM cfgs.
Every section written states `pad=` and its activation: the PyTorch codebases read no defaults for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from yolopatch.operators.spec import Operator, Values

# the option names that darknet spells its own way
_KEY_NAMES = {"k": "size", "r": "reduction", "gc": "group_channels"}
# activations the PyTorch codebases that read cfgs all compute (relu is silently linear in them)
HIDDEN = ("leaky", "mish", "swish")


@dataclass(frozen=True)
class Block:
    """The sections an operator becomes: each a type and its keys in order; `native` when darknet and
    OpenCV know every type."""

    sections: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    native: bool

    def text(self, newline: str) -> str:
        """The sections as cfg text, separated by blank lines, ending with a line end."""
        parts = [
            newline.join([f"[{kind}]", *(f"{key}={value}" for key, value in keys)]) + newline
            for kind, keys in self.sections
        ]
        return newline.join(parts)

    @property
    def size(self) -> int:
        return len(self.sections)


@dataclass(frozen=True)
class NativeForm:
    """An operator written in darknet's own layers: what they are, and the types besides [convolutional]
    that a PyTorch codebase must build for it."""

    layers: str
    types: tuple[str, ...]


NATIVE = {
    "se": NativeForm("[avgpool] + 1x1 [convolutional] x2 + [scale_channels]", ("avgpool", "scale_channels")),
    "sam": NativeForm("1x1 [convolutional] (batch norm, logistic) + [sam]", ("sam",)),
}


def native_form(op: Operator) -> str:
    """darknet's own layers for the operator ("" when it becomes a section of its own type)."""
    form = NATIVE.get(op.name.lower()) if op.user is None else None
    return form.layers if form else ""


def native_types(op: Operator) -> tuple[str, ...]:
    """The section types besides [convolutional] a cfg holds for `op`: its native form's, else its own."""
    form = NATIVE.get(op.name.lower()) if op.user is None else None
    return form.types if form else (section_type(op),)


def section_type(op: Operator) -> str:
    return op.name.lower()


def key_name(option: str) -> str:
    """The cfg key of an operator option (darknet's own spelling where it has one: k is `size`)."""
    return _KEY_NAMES.get(option, option)


def block_for(op: Operator, c1: int, c2: int, stride: int | Fraction, values: Values, hidden: str) -> Block:
    """The sections for `op` reading `c1` channels and giving `c2` at `stride`."""
    if native_form(op):
        return sam_block(c1) if op.name.lower() == "sam" else se_block(c1, c1 // values["r"], hidden)
    keys: list[tuple[str, str]] = [("filters", str(c2))]
    if op.strided or stride != 1:  # a fixed stride too: the walk (and every reader of the cfg) reads it there
        keys.append(("stride", str(stride)))
    keys += [(key_name(o.name), _text(values[o.name])) for o in op.options if values[o.name] is not None]
    return Block(((section_type(op), tuple(keys)),), native=False)


Section = tuple[str, tuple[tuple[str, str], ...]]


def _conv(filters: int, activation: str, batch_normalize: bool = False) -> Section:
    """A 1x1 [convolutional], every key the codebases read written out."""
    keys = (
        *((("batch_normalize", "1"),) if batch_normalize else ()),
        ("filters", str(filters)),
        ("size", "1"),
        ("stride", "1"),
        ("pad", "1"),
        ("activation", activation),
    )
    return "convolutional", keys


def se_block(c: int, squeezed: int, hidden: str) -> Block:
    """SE on `c` channels through `squeezed` hidden ones (C // r) with the `hidden` activation."""
    return Block(
        (
            ("avgpool", ()),
            _conv(squeezed, hidden),
            _conv(c, "logistic"),
            ("scale_channels", (("from", "-4"),)),
        ),
        native=True,
    )


def sam_block(c: int) -> Block:
    """YOLOv4's point-wise SAM on `c` channels: the gate (batch norm, logistic) times the input."""
    return Block((_conv(c, "logistic", batch_normalize=True), ("sam", (("from", "-2"),))), native=True)


def hidden_activation(activations: Sequence[str]) -> str:
    """The hidden activation of a native SE: the model's most used one of those every codebase computes."""
    counts = {name: activations.count(name) for name in HIDDEN}
    best = max(HIDDEN, key=lambda name: counts[name])
    return best if counts[best] else "leaky"


def matches(block: Block, found: Sequence[tuple[str, Mapping[str, str]]]) -> bool:
    """Whether sections (type, keys as darknet reads them) are exactly the block, keys in any order."""
    if len(found) != block.size:
        return False
    return all(
        kind == want_kind and dict(keys) == dict(want)
        for (kind, keys), (want_kind, want) in zip(found, block.sections, strict=True)
    )


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
