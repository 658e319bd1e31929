"""`--into`: an operator inside each bottleneck of a CSP block (C3_SE, C2f_CBAM, C3k2_Involution).

The generated class's parameters must equal the CSP block's with each bottleneck's slot filled by the
operator, computed independently here from the stock block and the operator alone; `n` bottlenecks must
really hold it; the row keeps from, n and args; inject and revert as for any operator.
"""

from __future__ import annotations

import importlib
import shutil

import pytest
import torch
from helpers import EXAMPLE, build_of, check_yaml, geometry_of, inject_into, revert_from, run_cli, snapshot

from yolopatch.commands.apply import ApplyOptions, apply_into
from yolopatch.csp import slot_of, variant_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import write_changes
from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.targets.yolov5.blocks import C3, Bottleneck

C3_ROWS = [(64, 1), (128, 2), (256, 3), (512, 1), (256, 1), (128, 1), (256, 1), (512, 1)]  # yolov5s: c2, n
STOCK_PARAMS = 7235389


def _template_class(name: str) -> type:
    import importlib

    op = get_operator(name)
    return getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)


def _expected(name: str) -> int:
    """yolov5s' parameters with the operator in every C3 bottleneck's slot, from the stock C3 alone."""
    cls, (slot, _) = _template_class(name), slot_of(get_operator(name))
    total = STOCK_PARAMS
    for c2, n in C3_ROWS:
        for b in C3(c2, c2, n).m:
            conv = b.cv2.conv
            op = (
                cls(conv.out_channels, conv.out_channels)
                if slot == "keep"
                else cls(conv.in_channels, conv.out_channels)
            )
            total += sum(p.numel() for p in op.parameters())
            if slot == "conv":
                total -= sum(p.numel() for p in b.cv2.parameters())
    return total


@pytest.mark.parametrize("name", list(OPERATORS))
def test_every_operator_into_yolov5s_c3_has_the_parameters_computed_independently(name):
    op = get_operator(name)
    result = apply_into(EXAMPLE, "C3", ApplyOptions(op), "C3")
    variant = f"C3_{op.name}"
    assert [c.index for c in result.changes] == [2, 4, 6, 8, 13, 17, 20, 23]
    assert result.text.count(f", {variant}, ") == 8 and "[-1, 3, C3_" in result.text  # n and args kept
    report = check_yaml(result.text, "m.yaml", 64, 2)
    assert report.params == _expected(name)
    rows = [layer for layer in report.layers if layer.module == variant]
    assert all(layer.operator == op.name for layer in rows)


def test_n_bottlenecks_really_hold_the_operator():
    from yolopatch.channels import simulate
    from yolopatch.modelyaml import parse_model_yaml

    text = apply_into(EXAMPLE, "C3", ApplyOptions(get_operator("cbam")), "C3").text
    parsed = parse_model_yaml(text, "m.yaml")
    model = build_of(parsed, simulate(parsed.logical_rows(), geometry_of(parsed.values), "m.yaml"))
    cbams = [type(m).__name__ for m in model.modules()].count("CBAM")
    assert cbams == sum(n for _, n in C3_ROWS)  # the n parse_model gives each row at depth 0.33
    for layer in model.model:
        if layer.type == "C3_CBAM":
            assert all(isinstance(b, Bottleneck) and isinstance(b.cv2, torch.nn.Sequential) for b in layer.m)


def test_applying_twice_equals_applying_once():
    options = ApplyOptions(get_operator("se"))
    once = apply_into(EXAMPLE, "C3", options, "csp").text
    assert apply_into(once, "C3_SE", options, "csp").text == once


REFUSED = [
    pytest.param("1", "se", "C3", YolopatchError, "it is not a CSP row", id="not-a-csp-row"),
    pytest.param("2", "se", "C2f", OptionError, "YOLOv5's CSP blocks are C3", id="family-has-no-such-block"),
]


@pytest.mark.parametrize(("layers", "name", "into", "error", "words"), REFUSED)
def test_what_does_not_fit_is_refused_with_the_reason(layers, name, into, error, words):
    with pytest.raises(error, match=words):
        apply_into(EXAMPLE, layers, ApplyOptions(get_operator(name)), into)


def test_options_are_refused_with_into():
    with pytest.raises(YolopatchError, match="options .* are not supported with --into"):
        apply_into(EXAMPLE, "2", ApplyOptions(get_operator("se"), {"r": 4}), "C3")


ULTRALYTICS_SHAPED = """nc: 80
scales:
  n: [0.33, 0.25, 1024]
backbone:
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 3, C2f, [256, True]]
  - [-1, 2, C3k2, [512, False, 0.25]]
head:
  - [[2], 1, Detect, [nc]]
"""


def test_a_csp_row_of_another_block_is_not_read_as_this_one():
    with pytest.raises(
        YolopatchError, match=r"it is a C2f row: --into C3 would read its arguments \[256, True\]"
    ):
        apply_into(ULTRALYTICS_SHAPED, "1", ApplyOptions(get_operator("se")), "C3")
    result = apply_into(ULTRALYTICS_SHAPED, "1,2", ApplyOptions(get_operator("se")), "csp")
    assert (
        "[-1, 3, C2f_SE, [256, True]]" in result.text
        and "[-1, 2, C3k2_SE, [512, False, 0.25]]" in result.text
    )


def _checkout_with_bottleneck(checkout):
    """Our stand-in checkout, with the Bottleneck class the generated C3 variant looks for."""
    root = checkout("master")
    common = root / "models" / "common.py"
    common.write_text(common.read_text() + "\n\nclass Bottleneck(torch.nn.Module):\n    pass\n")
    return root


def test_a_target_without_the_blocks_it_builds_on_is_refused(checkout):
    root = checkout("master")
    se = get_operator("se")
    with pytest.raises(YolopatchError, match="defines no Bottleneck, which C3_SE builds on"):
        inject_into(root, [se, variant_operator("C3", se)])


def test_inject_writes_a_subclass_of_the_targets_own_block_registered_as_it(checkout):
    root = _checkout_with_bottleneck(checkout)
    before = snapshot(root)
    se = get_operator("se")
    plan = inject_into(root, [se, variant_operator("C3", se)])
    write_changes(plan.changes)
    common = (root / "models" / "common.py").read_text()
    assert "class C3_SE(C3):" in common and "b.cv2 = nn.Sequential(b.cv2, SE(c, c))" in common
    assert any("C3_SE to parse_model's repeat collection" in a for a in plan.actions)
    assert not inject_into(root, [se, variant_operator("C3", se)]).changed
    write_changes(revert_from(root).changes)
    assert snapshot(root) == before


def test_cli_inject_for_a_yaml_finds_the_variants(checkout, tmp_path):
    root = _checkout_with_bottleneck(checkout)
    (tmp_path / "m.yaml").write_text(apply_into(EXAMPLE, "C3", ApplyOptions(get_operator("cbam")), "C3").text)
    result = run_cli("inject", str(root), "--for", "m.yaml", "--diff", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "+class C3_CBAM(C3):" in result.stdout and "+class CBAM(nn.Module):" in result.stdout


USER_INTO = [
    pytest.param(
        "se_attention.py", "SEAttention", [], "keep", lambda cls, c_in, c_out: cls(channel=c_out), id="keep"
    ),
    pytest.param(
        "convs.py",
        "AKConv",
        ["--set", "num_param=5"],
        "conv",
        lambda cls, c_in, c_out: cls(c_in, c_out, 5),
        id="conv",
    ),
]


@pytest.mark.parametrize(("file", "cls", "extra", "slot", "make"), USER_INTO)
def test_a_users_keep_or_conv_module_goes_into_c3_with_the_parameters_computed_independently(
    tmp_path, file, cls, extra, slot, make
):
    import importlib.util
    import json

    from user_module_cases import USER_MODULES

    shutil.copy(USER_MODULES / file, tmp_path / file)
    (tmp_path / "m.yaml").write_text(EXAMPLE, encoding="utf-8")
    assert run_cli("ops", "add", f"{file}:{cls}", *extra, cwd=tmp_path).returncode == 0
    applied = run_cli("apply", "m.yaml", "-l", "C3", "--op", cls, "--into", "C3", "--in-place", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    checked = run_cli("check", "m.yaml", "--img", "64", "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    spec = importlib.util.spec_from_file_location("fixture", USER_MODULES / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = STOCK_PARAMS
    for c2, n in C3_ROWS:
        for b in C3(c2, c2, n).m:
            conv = b.cv2.conv
            expected += sum(
                p.numel()
                for p in make(getattr(module, cls), conv.in_channels, conv.out_channels).parameters()
            )
            expected -= sum(p.numel() for p in b.cv2.parameters()) if slot == "conv" else 0
    assert json.loads(checked.stdout)["model"]["params"] == expected


@pytest.mark.parametrize("op", ["CBAM", "Involution"], ids=["keep-slot", "conv-slot"])
def test_the_built_class_is_the_class_inject_writes(op):
    """The builder makes the `--into` class from the block and the slot without compiling source; it equals
    the class `inject` writes (csp.variant_source), parameter for parameter and key for key."""
    from torch import nn

    from yolopatch.build.builder import variant_class
    from yolopatch.csp import slot_of, variant_source
    from yolopatch.operators.registry import get_operator

    operator = get_operator(op.lower(), {})
    slot, _ = slot_of(operator)
    module = importlib.import_module(f"yolopatch.templates.{operator.template}")
    namespace = {"C3": C3, "Bottleneck": Bottleneck, "nn": nn, op: getattr(module, op)}
    exec(compile(variant_source("C3", op, slot), "<inject's class>", "exec"), namespace)
    written, built = (
        namespace[f"C3_{op}"](64, 64, 2),
        variant_class(f"C3_{op}", C3, Bottleneck, getattr(module, op), slot)(64, 64, 2),
    )
    assert {k: v.shape for k, v in written.state_dict().items()} == {
        k: v.shape for k, v in built.state_dict().items()
    }
