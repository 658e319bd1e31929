"""SimAM, a parameter-free attention module (Yang et al., ICML 2021, PMLR 139)."""

from __future__ import annotations

from yolopatch.operators.spec import Operator, Option, keep_channel_args


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0 (0 divides by zero on constant channels)"


_OPTIONS = (
    Option("e_lambda", 1e-4, "--set e_lambda", "regulariser lambda (> 0)", parse=float, check=_positive),
)

SimAM = Operator(
    name="SimAM",
    summary="parameter-free gate from each neuron's energy against its channel's mean and variance",
    paper="Yang et al., ICML 2021",
    title="SimAM: A Simple, Parameter-Free Attention Module for Convolutional Neural Networks",
    url="https://proceedings.mlr.press/v139/yang21o.html",
    template="simam",
    options=_OPTIONS,
    yaml_args=keep_channel_args(_OPTIONS),
    channel_problem=lambda c1, values: None,
    params=lambda c, _c2, values: 0,
    params_formula="0",
    keeps_channels=True,
)
