"""Index: one map of a backbone's list (the name and semantics a target of its own may have), written where the target has
none. Not an operator a user chooses: `apply --backbone` writes its rows and `inject` adds it with the
backbone."""

from __future__ import annotations

from fractions import Fraction

from yolopatch.operators.spec import Operator

INDEX = Operator(
    name="Index",
    summary="one feature map of the list a backbone row returns",
    paper="a row that picks one output of a backbone's list",
    title="Index",
    url="",
    template="index",
    options=(),
    yaml_args=lambda channels, _stride, _values: [channels],
    channel_problem=lambda _c1, _values: None,
    params=lambda _c1, _c2, _values: 0,
    params_formula="0",
    keeps_channels=False,
    own_stride=Fraction(1),
    backbone="index",
)
