"""Your own module's rule without a probe: the vocabulary as declared and recorded, and `apply` with a
recorded operator, which writes rows whose channels parse_model reproduces at every scale and refuses
layers the rule does not fit (no probe, no torch; tests/test_userop.py learns the rules).
"""

from __future__ import annotations

import pytest
from helpers import EXAMPLE, fixture_text, geometries_of
from user_module_cases import USER_MODULES

from yolopatch.channels import simulate
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.targets.registry import import_kinds
from yolopatch.userop.adapter import as_operator
from yolopatch.userop.learn import Rule, parse_rule
from yolopatch.userop.record import UserOp, load, record_text
from yolopatch.userop.source import read_class

# --- apply with a recorded operator: no probe, no torch -------------------------------------------------------


def _op(name: str, rule: Rule, params: tuple[str, ...], roles: dict, defaults: dict, **more) -> UserOp:
    return UserOp(name, USER_MODULES / "x.py", name, rule, params, roles, defaults, **more)


KEEP = _op("Gate", Rule("keep"), ("channels", "r"), {"channels": "c1", "r": "-"}, {"r": 16}, divisor=16)
DOWN = _op("Down", Rule("conv", "2"), ("c1", "c2"), {"c1": "c1", "c2": "c2"}, {})
STRIDED = _op(
    "Dyn",
    Rule("conv", "arg:stride"),
    ("c1", "c2", "stride"),
    {"c1": "c1", "c2": "c2", "stride": "stride"},
    {"stride": 1},
)
UP = _op("Up", Rule("keep", "up:scale"), ("c", "scale"), {"c": "c1", "scale": "up"}, {"scale": 2})
CSP = _op("Csp", Rule("csp"), ("c1", "c2", "n"), {"c1": "c1", "c2": "c2", "n": "n"}, {})
DOUBLING = _op(
    "CGDown", Rule("2*c1", "2"), ("nIn", "reduction"), {"nIn": "c1", "reduction": "-"}, {"reduction": 16}
)
GROW = _op("Grow", Rule("2*c1"), ("c1",), {"c1": "c1"}, {})

APPLY = [
    pytest.param(KEEP, "9", True, "[-1, 1, Gate, [1024]],  # 10", id="keep-insert-after-sppf"),
    pytest.param(KEEP, "2", False, "[-1, 1, Gate, [128]],", id="keep-replaces-a-c3-that-keeps"),
    pytest.param(DOWN, "1", False, "[-1, 1, Down, [128]],  # 1-P2/4", id="stride-2-replaces-stride-2"),
    pytest.param(STRIDED, "3", False, "[-1, 1, Dyn, [256, 2]],  # 3-P3/8", id="stride-from-its-argument"),
    pytest.param(UP, "11", False, "[-1, 1, Up, [512]],", id="upsampler-replaces-upsample"),
    pytest.param(CSP, "2", False, "[-1, 3, Csp, [128]],", id="csp-keeps-n"),
    pytest.param(
        DOUBLING, "1", False, "[-1, 1, CGDown, [128]],  # 1-P2/4", id="2c1-replaces-a-conv-that-doubles"
    ),
]


@pytest.mark.parametrize(("op", "layers", "insert", "row"), APPLY)
def test_apply_writes_a_recorded_operator_with_the_channels_parse_model_reproduces(op, layers, insert, row):
    options = ApplyOptions(as_operator(op), insert=insert, users=(as_operator(op),))
    result = apply_operator(EXAMPLE, layers, options)
    assert row in result.text
    assert (
        apply_operator(result.text, layers if not insert else "9", options).text == result.text or not insert
    )


REFUSALS = [
    pytest.param(DOWN, "4", False, "has stride 2 and this layer 1", id="stride-2-not-for-stride-1"),
    pytest.param(DOWN, "4", True, "would change the size of every later layer", id="no-strided-insert"),
    pytest.param(UP, "4", False, "replaces an nn.Upsample row", id="upsampler-only-for-upsample"),
    pytest.param(KEEP, "3", False, "keeps channels and size", id="keep-not-for-a-strided-conv"),
    pytest.param(
        DOUBLING,
        "0",
        False,
        "outputs 2x its input's channels; this layer has 3 in, 32 out",
        id="2c1-not-3-to-32",
    ),
    pytest.param(GROW, "9", True, "would change the channels of every later layer", id="no-multiple-insert"),
    pytest.param(DOUBLING, "2", False, "has stride 2 and this layer 1", id="2c1-stride-2-not-for-stride-1"),
]


@pytest.mark.parametrize(("op", "layers", "insert", "words"), REFUSALS)
def test_apply_refuses_where_the_rule_does_not_fit(op, layers, insert, words):
    options = ApplyOptions(as_operator(op), insert=insert, users=(as_operator(op),))
    with pytest.raises(YolopatchError, match=words):
        apply_operator(EXAMPLE, layers, options)


SCALED = [
    pytest.param("1", None, id="doubles-at-every-scale"),
    pytest.param("11", None, id="a-head-down-conv-that-doubles"),
    pytest.param(
        "5",
        "at scale m: CGDown outputs 2x its input's channels; this layer has 512 in, 512 out",
        id="max-channels-clamps-m",
    ),
]


@pytest.mark.parametrize(("layers", "refusal"), SCALED)
def test_a_multiple_blocks_row_gives_parse_model_its_real_output_at_every_scale(layers, refusal):
    op = as_operator(DOUBLING)
    options = ApplyOptions(op, users=(op,))
    text = fixture_text("ultralytics/scales.yaml")
    if refusal is not None:
        with pytest.raises(YolopatchError, match=refusal):
            apply_operator(text, layers, options)
        return
    model = parse_model_yaml(apply_operator(text, layers, options).text)
    index = int(layers)
    assert model.layers[index].module == "CGDown"
    for geo in geometries_of(model.values, operators=[op]).values():
        shape = simulate(model.logical_rows(), geo).shapes[index]
        assert shape.c2 == 2 * shape.c1  # what parse_model records is what the block outputs


def test_a_learned_divisor_is_checked_at_the_layers_width():
    text = EXAMPLE.replace("width_multiple: 0.50", "width_multiple: 0.3")
    options = ApplyOptions(as_operator(KEEP), insert=True, users=(as_operator(KEEP),))
    with pytest.raises(YolopatchError, match="divisible by 16"):  # 64 * 0.3 -> 24 channels
        apply_operator(text, "0", options)


RULE_TEXTS = [
    pytest.param("keep", Rule("keep"), id="keep"),
    pytest.param("2*c1:2", Rule("2*c1", "2"), id="twice-the-input-at-stride-2"),
    pytest.param("4*c1:2", Rule("4*c1", "2"), id="reorg"),
    pytest.param("12*c1", Rule("12*c1"), id="two-digits"),
    pytest.param("1*c1", None, id="one-is-keep"),
    pytest.param("2*c2", None, id="a-multiple-of-c1-only"),
    pytest.param("c1*2", None, id="the-multiple-first"),
    pytest.param("1.5*c1", None, id="whole-multiples-only"),
]


@pytest.mark.parametrize(("text", "rule"), RULE_TEXTS)
def test_a_rule_is_declared_and_recorded_in_the_vocabulary(text, rule, tmp_path):
    source = read_class(USER_MODULES / "multiples.py", "ContextGuidedBlock_Down", import_kinds())
    if rule is None:
        with pytest.raises(OptionError, match="N\\*c1"):
            parse_rule(text, source)
        return
    assert parse_rule(text, source) == rule
    op = _op("Mine", rule, ("nIn",), {"nIn": "c1"}, {}, config=tmp_path / "yolopatch.toml")
    (tmp_path / "yolopatch.toml").write_text(record_text(None, op), encoding="utf-8")
    assert load(tmp_path / "yolopatch.toml")["Mine"].rule == rule
