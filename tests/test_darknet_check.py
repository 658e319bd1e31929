"""`check MODEL.cfg` with the built-in darknet builder: forward and backward, the [yolo] heads' strides,
per-layer parameters, and each operator's cost equal to its formula, native SE included."""

from __future__ import annotations

import pytest
from helpers import FIXTURES, run_cli

from yolopatch.darknet.decide import Request
from yolopatch.darknet.edit import apply_cfg
from yolopatch.darknet.measure import check_cfg
from yolopatch.errors import YolopatchError
from yolopatch.operators.registry import OPERATORS

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
RES3 = (FIXTURES / "darknet" / "res3.cfg").read_bytes().decode()


def _conv_params(c1: int, c2: int, k: int, bn: bool = True) -> int:
    return c1 * c2 * k * k + (2 * c2 if bn else c2)


@pytest.fixture(scope="module")
def tiny4():
    return check_cfg(TINY4, "tiny4.cfg", 64, 1)


def test_heads_strides_and_per_layer_parameters(tiny4):
    assert tiny4.strides == [32.0, 16.0]
    by_index = {layer.index: layer for layer in tiny4.layers}
    assert by_index[0].params == _conv_params(3, 32, 3)
    assert by_index[29].params == _conv_params(512, 255, 1, bn=False)
    assert by_index[3].output == "[1, 32, 16, 16]"  # the second half of layer 2's 64 channels
    assert by_index[34].output == "[1, 384, 4, 4]"
    assert tiny4.params == sum(layer.params for layer in tiny4.layers) == tiny4.gradients


@pytest.mark.parametrize(("name", "insert"), [(n, True) for n in OPERATORS] + [("involution", False)])
def test_an_operator_adds_exactly_its_formulas_parameters(tiny4, name, insert):
    op = OPERATORS[name]
    result = apply_cfg(TINY4, "16" if insert else "12", Request(op, op.defaults, insert), "t.cfg")
    report = check_cfg(result.text, "t.cfg", 64, 1)
    c1, c2 = (256, 256) if insert else (64, 64)
    replaced = 0 if insert else _conv_params(64, 64, 3)
    assert report.params - tiny4.params == op.params(c1, c2, op.defaults) - replaced
    assert report.strides == tiny4.strides


def test_a_residual_model_with_spp_builds():
    report = check_cfg(RES3, "res3.cfg", 64, 2)
    assert report.strides == [16.0, 8.0]
    assert next(layer for layer in report.layers if layer.index == 23).output == "[2, 1024, 4, 4]"


def test_a_section_without_a_builder_is_named():
    text = TINY4.replace("[upsample]\nstride=2", "[crop]\nstride=2")
    with pytest.raises(YolopatchError, match="no block for \\[crop\\]"):
        check_cfg(text, "t.cfg", 64, 1)


def test_check_through_the_command_line(tmp_path):
    path = tmp_path / "m.cfg"
    path.write_text(TINY4)
    result = run_cli("check", str(path), "--img", "64")
    assert result.returncode == 0, result.stderr
    assert "6056606 parameters" in result.stdout and "forward and backward at 64x64: ok" in result.stdout
    refused = run_cli("check", str(path), "--repo", str(tmp_path))  # --repo: a codebase that builds cfgs
    assert refused.returncode == 1 and "not a checkout yolopatch knows" in refused.stderr
