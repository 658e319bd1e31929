"""The operator registry against the built modules, and apply / inject / check with every operator."""

from __future__ import annotations

import importlib
import itertools
import json
import re
import shutil

import pytest
from helpers import (
    EXAMPLE,
    STUBS,
    YOLOV5_VERSIONS,
    check_yaml,
    contract_inserted,
    font_home,
    graph,
    release_sweep,
    run_cli,
    snapshot,
)

from yolopatch import __version__
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.edit.decide import article
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.operators.eca import adaptive_kernel
from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.operators.spec import resolve_values
from yolopatch.paste import template_paste

# the operators that keep their input's channels and size: all but Involution
ATTENTION = [name for name, op in OPERATORS.items() if op.keeps_channels]


def _module(name: str, c: int, values: dict):
    op = get_operator(name)
    cls = getattr(importlib.import_module(f"yolopatch.templates.{op.template}"), op.name)
    resolved = resolve_values(op, values)
    return cls(c, c, **resolved)  # option names are the constructor's parameter names


PARAMS = [
    pytest.param(name, c, values, id=f"{name}-{c}-{'-'.join(map(str, values.values())) or 'defaults'}")
    for name, cases in {
        "involution": [(64, {}), (128, {"k": 3, "gc": 8, "r": 2}), (16, {"gc": 16, "r": 16})],
        "se": [(64, {}), (1024, {"r": 8}), (16, {"r": 16})],
        "cbam": [(64, {}), (512, {"r": 4, "k": 3}), (16, {"r": 16, "k": 1})],
        "eca": [(64, {}), (1024, {}), (256, {"k": 7}), (1, {})],
        "coordatt": [(64, {}), (1024, {"r": 16}), (8, {"r": 1})],
        "simam": [(64, {}), (512, {"e_lambda": 0.1})],
    }.items()
    for c, values in cases
]


@pytest.mark.parametrize(("name", "c", "values"), PARAMS)
def test_spec_parameter_formula_equals_the_built_module(name, c, values):
    op = get_operator(name)
    module = _module(name, c, values)
    assert sum(p.numel() for p in module.parameters()) == op.params(c, c, resolve_values(op, values))


def test_eca_adaptive_kernel_follows_the_paper():
    assert [adaptive_kernel(c) for c in (16, 64, 128, 256, 512, 1024, 2048)] == [3, 3, 5, 5, 5, 5, 7]


@pytest.mark.parametrize("name", list(OPERATORS))
def test_every_template_defines_its_class_and_needs_at_most_conv(name):
    op = get_operator(name)
    paste = template_paste(op.template)
    assert op.name in paste.classes and paste.requires <= {"Conv"}
    assert "import" not in paste.body.split("class ")[0]


YAML_ARGS = [
    ("involution", {}, 7, 2, [256, 7, 2]),
    ("involution", {"gc": 8}, 7, 1, [256, 7, 1, 8, 4]),
    ("se", {}, 1, 1, [256]),
    ("se", {"r": 8}, 1, 1, [256, 8]),
    ("cbam", {"k": 3}, 1, 1, [256, 16, 3]),
    ("cbam", {"r": 16, "k": 7}, 1, 1, [256]),
    ("eca", {"k": 5}, 1, 1, [256, 5]),
    ("coordatt", {}, 1, 1, [256]),
    ("simam", {"e_lambda": 0.001}, 1, 1, [256, 0.001]),
]


@pytest.mark.parametrize(("name", "values", "_k", "stride", "expected"), YAML_ARGS)
def test_yaml_args_write_only_what_differs_from_the_defaults(name, values, _k, stride, expected):
    op = get_operator(name)
    assert op.yaml_args(256, stride, resolve_values(op, values)) == expected


BAD_OPTIONS = [
    ("se", {"r": 0}, "--reduction", "SE --reduction 0: must be at least 1"),
    ("cbam", {"kernel": "4"}, "--kernel", "CBAM --kernel 4: must be odd"),
    ("eca", {"k": "x"}, "--kernel", "ECA --kernel x: not a valid value"),
    ("simam", {"e_lambda": "0"}, "--set e_lambda", "SimAM --set e_lambda 0.0: must be greater than 0"),
    ("coordatt", {"group-channels": 8}, "group-channels", "CoordAtt has no option 'group-channels'"),
]


@pytest.mark.parametrize(("name", "given", "option", "message"), BAD_OPTIONS)
def test_bad_option_values_name_the_operator_and_the_option(name, given, option, message):
    with pytest.raises(OptionError) as info:
        resolve_values(get_operator(name), given)
    assert info.value.option == option and message in str(info.value)


def test_operator_names_are_case_insensitive_and_unknown_ones_list_the_known():
    assert [get_operator(op.name.swapcase()) for op in OPERATORS.values()] == list(OPERATORS.values())
    known = ", ".join(op.name for op in OPERATORS.values())
    with pytest.raises(
        YolopatchError, match=re.escape(f"--op no-such-op: unknown operator; yolopatch knows {known}.")
    ):
        get_operator("no-such-op")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("Involution", "an"), ("ECA", "an"), ("SE", "an"), ("SKNet", "an"), ("CBAM", "a"), ("SimAM", "a")],
)
def test_messages_write_an_before_a_vowel_sound(name, expected):
    assert article(name) == expected


@pytest.mark.parametrize("name", ATTENTION)
def test_insert_after_sppf_writes_the_channels_parse_model_reproduces(name):
    op = get_operator(name)
    result = apply_operator(EXAMPLE, "9", ApplyOptions(op, insert=True))
    before, after = graph(EXAMPLE), graph(result.text)
    contracted, inserted = contract_inserted(before, after, inserted_module=op.name)
    assert contracted == before and inserted == [10]
    assert after[10] == (op.name, op.yaml_args(1024, 1, op.defaults), (9,)) and after[10][1][0] == 1024
    assert apply_operator(result.text, "SPPF", ApplyOptions(op, insert=True)).text == result.text


@pytest.mark.parametrize("name", ATTENTION)
def test_replace_only_where_the_layer_keeps_channels_and_size(name):
    op = get_operator(name)
    result = apply_operator(EXAMPLE, "2", ApplyOptions(op))  # C3 [128]: 64 channels in and out
    assert graph(result.text)[2] == (op.name, [128], (1,))
    with pytest.raises(YolopatchError) as info:
        apply_operator(EXAMPLE, "7", ApplyOptions(op))  # Conv [1024, 3, 2]: 256 -> 512, stride 2
    assert (
        f"layer 7 (Conv): cannot replace it with {article(op.name)} {op.name}: "
        f"{op.name} keeps channels and size; this layer changes 256 to 512 channels and divides the size by 2: "
        "use --insert."
    ) in str(info.value)


def test_a_reduction_that_leaves_no_channel_is_refused_naming_the_layer():
    with pytest.raises(YolopatchError, match=r"layer 2 \(C3\).*64 // --reduction 128 is 0"):
        apply_operator(EXAMPLE, "2", ApplyOptions(get_operator("se"), {"r": 128}, insert=True))


# yolov5s's layers the operators go after, in turn: widths 64 to 512, strides 4 to 32, backbone and head
AFTER = [2, 4, 6, 9, 13, 17]


def _all_operators_yaml() -> str:
    """yolov5s with every operator inserted, each after one of AFTER in turn (the deepest first, so that
    the layer numbers stay yolov5s's)."""
    text = EXAMPLE
    placed = sorted(zip(itertools.cycle(AFTER), OPERATORS.values()), key=lambda pair: -pair[0])
    for layer, op in placed:
        text = apply_operator(text, str(layer), ApplyOptions(op, insert=True)).text
    return text


def test_check_builds_every_operator_with_the_formula_parameters():
    base = check_yaml(EXAMPLE, "yolov5s", 128, 1)
    report = check_yaml(_all_operators_yaml(), "all", 128, 1)
    marked = {layer.operator: layer for layer in report.layers if layer.operator}
    assert sorted(marked) == sorted(op.name for op in OPERATORS.values())
    for name, layer in marked.items():
        op, c = get_operator(name), int(layer.output.split(", ")[1])
        assert layer.params == op.params(c, c, op.defaults), name
    assert report.params == base.params + sum(layer.params for layer in marked.values())
    # the work thop misses (Involution's aggregation) is counted apart, for the operators that have such work
    uncounted = {name for name, layer in marked.items() if layer.uncounted_gflops > 0}
    assert uncounted == {op.name for op in OPERATORS.values() if op.uncounted_macs is not None}
    assert report.uncounted_gflops == pytest.approx(sum(layer.uncounted_gflops for layer in marked.values()))


def test_inject_several_operators_then_revert_one_then_all(checkout):
    repo = checkout("master")
    pristine = snapshot(repo)
    assert run_cli("inject", str(repo), "--op", "se,CBAM,eca").returncode == 0
    common = (repo / "models" / "common.py").read_text()
    assert [common.count(f"# >>> yolopatch {__version__}: {n};") for n in ("SE", "CBAM", "ECA")] == [1, 1, 1]
    assert "import math" in common  # ECA's template needs it and this common.py lacks it
    again = run_cli("inject", str(repo), "--op", "se,cbam,eca")
    assert again.returncode == 0 and "already injected" in again.stderr
    assert run_cli("inject", str(repo), "--op", "se", "--check").returncode == 0
    assert run_cli("inject", str(repo), "--op", "simam", "--check").returncode == 1
    assert run_cli("inject", str(repo), "--op", "cbam", "--revert").returncode == 0
    yolo = (repo / "models" / "yolo.py").read_text()
    assert "CBAM" not in yolo and "SE," in yolo and "ECA" in yolo
    assert run_cli("inject", str(repo), "--revert").returncode == 0
    assert snapshot(repo) == pristine


def test_inject_for_a_yaml_injects_exactly_the_operators_it_uses(checkout, tmp_path):
    repo = checkout("v3")
    model = tmp_path / "model.yaml"
    model.write_text(_all_operators_yaml(), encoding="utf-8")
    result = run_cli("inject", str(repo), "--for", str(model))
    assert result.returncode == 0, result.stderr
    common = (repo / "models" / "common.py").read_text()
    for op in OPERATORS.values():
        assert f"\nclass {op.name}(nn.Module):" in common
    plain = tmp_path / "plain.yaml"
    plain.write_text(EXAMPLE, encoding="utf-8")
    refused = run_cli("inject", str(repo), "--for", str(plain))
    assert refused.returncode == 1 and "uses none of the operators" in refused.stderr


def test_apply_names_the_output_after_the_operator_and_the_next_step_injects_it(tmp_path):
    path = tmp_path / "yolov5s.yaml"
    path.write_text(EXAMPLE, encoding="utf-8")
    result = run_cli("apply", str(path), "-l", "9", "--insert", "--op", "cbam")
    assert result.returncode == 0 and (tmp_path / "yolov5s-cbam.yaml").exists()
    assert f"yolopatch inject PATH/TO/yolov5 --for {tmp_path / 'yolov5s-cbam.yaml'}" in result.stdout


# parse_model's registration as a list (4.0), a tuple (6.1) and a set (7.0); the others with -m exhaustive
@pytest.mark.parametrize("version", release_sweep(YOLOV5_VERSIONS, ("4.0.14", "6.1.8", "7.0.14")))
def test_every_operator_in_each_releases_yolov5s_builds_with_its_own_model(
    yolov5_packages, tmp_path, version
):
    """Insert every attention operator after the last backbone layer of the release's own yolov5s, inject what
    the yaml uses, build with the release's Model: the parameters equal check's; revert restores every byte."""
    package = tmp_path / "site" / "yolov5"
    shutil.copytree(yolov5_packages[version], package)
    pristine = snapshot(package)
    text = (package / "models" / "yolov5s.yaml").read_text(encoding="utf-8")
    for offset, name in enumerate(ATTENTION):
        text = apply_operator(text, str(9 + offset), ApplyOptions(get_operator(name), insert=True)).text
    model = tmp_path / "yolov5s-attention.yaml"
    model.write_text(text, encoding="utf-8")
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    assert run_cli("inject", str(package), "--for", str(model), env=env).returncode == 0
    theirs = run_cli("check", str(model), "--repo", str(package), "--img", "128", "--json", env=env)
    assert theirs.returncode == 0, theirs.stderr
    report = json.loads(theirs.stdout)["model"]
    ours = check_yaml(text, str(model), 128, 1)
    assert report["params"] == ours.params
    assert [layer["operator"] for layer in report["layers"][10 : 10 + len(ATTENTION)]] == [
        get_operator(n).name for n in ATTENTION
    ]
    assert f" {ours.params} parameters" in report["reference"].replace(",", "")
    assert run_cli("inject", str(package), "--revert", env=env).returncode == 0
    assert snapshot(package) == pristine
