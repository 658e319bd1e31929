"""Fusion classes (a forward that takes one list of maps): `ops add` learns the rules each class really has
or refuses saying what to do; `apply` replaces a Concat or inserts a row with --from, checked at every
scale; the adapter and parse_model's one fusion branch; inject and revert byte for byte; and the targets'
own model classes (YOLOv5 v7.0, ultralytics 8.4) building the result with `check` agreeing on parameters.

The classes are our own, in the shapes of real ones (tests/fusion_cases.py). The apply tests use records
written as a user would write them (declared), so they need no probe.
"""

from __future__ import annotations

import ast
import functools
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path

import pytest
from fusion_cases import CASES, FusionCase
from helpers import EXAMPLE, STUBS, font_home, run_cli, snapshot
from test_ultralytics_real import Environment, checked
from user_module_case import USER_MODULES

from yolopatch.commands.apply import apply_operator
from yolopatch.commands.ops import AddResult, add_operator
from yolopatch.edit.options import ApplyOptions
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.targets.collections import FUSION_MARK, fusion_branch, fusion_branch_span
from yolopatch.userop.adapter import adapter_source, as_operator
from yolopatch.userop.record import UserOp, load, record_text
from yolopatch.userop.rule import FusionRule, Rule, parse_fusion_rule, size_pattern

LEARNED = [c for c in CASES if c.out is not None]
REFUSED = [c for c in CASES if c.out is None]


@functools.cache
def _learned(case_id: str, rule: str | None = None) -> AddResult:
    case = next(c for c in CASES if c.id == case_id)
    return add_operator(case.spec, Path(tempfile.mkdtemp(prefix="yolopatch-fusion-")), rule=rule, timeout=60)


# --- ops add -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", LEARNED, ids=[c.id for c in LEARNED])
def test_ops_add_learns_the_fusion_rules_the_class_really_has(case: FusionCase):
    op = _learned(case.id).op
    assert op.fusion == FusionRule(
        case.out, case.size, case.counts, case.widths, case.sizes, case.channels_as
    )
    assert op.fusion.out_param is None or op.roles[op.fusion.out_param] == "c2"


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_ops_add_refuses_what_is_no_fusion_class_and_says_why(case: FusionCase):
    with pytest.raises(YolopatchError, match=case.refusal):
        _learned(case.id)


def test_a_contradicted_rule_is_refused_naming_what_the_probe_shows():
    with pytest.raises(YolopatchError) as error:
        _learned("sdi", "out=sum,size=input:0")
    assert "--rule out=sum,size=input:0 does not hold" in str(error.value)
    assert "out=first" in str(error.value)


def test_a_declared_rule_the_probe_confirms_is_recorded_as_declared():
    op = _learned("pick-second", "out=input:1,size=input:1").op
    assert op.learned == "declared rule, confirmed by the probe"
    assert str(op.fusion) == "out=input:1,size=input:1"


# --- the rule, pure ------------------------------------------------------------------------------------------

F = Fraction
PROBLEMS = [
    ("fits", FusionRule("sum", "equal"), [64, 128], [F(8), F(8)], None),
    ("count", FusionRule("sum", "input:1", (3,)), [64, 128], [F(8), F(8)], "takes 3 inputs"),
    ("widths", FusionRule("equal", "equal", widths="equal"), [64, 128], [F(8), F(8)], "equal input widths"),
    ("sizes", FusionRule("arg:c2", "input:0", sizes=("down",)), [64, 64], [F(8), F(8)], "sizes down"),
    ("down fits", FusionRule("arg:c2", "input:0", sizes=("down",)), [64, 64], [F(8), F(16)], None),
    ("reads past", FusionRule("input:2", "input:2"), [64, 128], [F(8), F(8)], "reads input 2"),
    ("one input", FusionRule("sum", "equal"), [64], [F(8)], "reads one"),
]


@pytest.mark.parametrize(
    ("rule", "widths", "strides", "words"), [p[1:] for p in PROBLEMS], ids=[p[0] for p in PROBLEMS]
)
def test_what_a_fusion_class_needs_of_its_inputs(rule, widths, strides, words):
    problem = rule.problem(widths, strides)
    assert problem is None if words is None else words in problem


@pytest.mark.parametrize(
    ("out", "widths", "expected"),
    [
        ("sum", [24, 40, 56], 120),
        ("first", [24, 40], 24),
        ("last", [24, 40, 56], 56),
        ("input:1", [24, 40], 40),
        ("equal", [32, 32], 32),
        ("2*input:0", [24, 40], 48),
        ("arg:c2", [24, 40], 2 * 256),
    ],
)
def test_output_channels_by_rule(out, widths, expected):
    assert FusionRule(out, "equal").output_channels(widths, 256, lambda c: 2 * c) == expected


@pytest.mark.parametrize(
    ("strides", "pattern"),
    [
        ([F(8), F(8)], "equal"),
        ([F(8), F(16), F(32)], "down"),
        ([F(32), F(16)], "up"),
        ([F(8), F(32)], "other"),
    ],
)
def test_size_patterns(strides, pattern):
    assert size_pattern(strides) == pattern


@pytest.mark.parametrize(
    "text",
    ["out=mean,size=equal", "out=sum", "size=input:0", "out=arg:nope,size=equal", "out=sum,size=largest"],
)
def test_a_malformed_fusion_rule_is_a_usage_error(text):
    with pytest.raises(YolopatchError, match="out=OUT,size=SIZE"):
        parse_fusion_rule(text, ("c1", "c2"))


# --- records, adapters -----------------------------------------------------------------------------------------


def _record(folder: Path, name: str, rule: FusionRule, params=("c1", "c2"), roles=None) -> UserOp:
    """A record as a user would write it into yolopatch.toml (declared), of a class in fusion.py."""
    shutil.copy(USER_MODULES / "fusion.py", folder / "fusion.py")
    op = UserOp(
        name=name,
        file=(folder / "fusion.py").resolve(),
        cls=name,
        rule=Rule("fusion"),
        params=params,
        roles=roles or {"c1": "c1", "c2": "c2"},
        defaults={},
        config=folder / "yolopatch.toml",
        fusion=rule,
    )
    existing = (folder / "yolopatch.toml").read_text() if (folder / "yolopatch.toml").exists() else None
    (folder / "yolopatch.toml").write_text(record_text(existing, op))
    return load(folder / "yolopatch.toml")[name]


RECORDS = {
    "WeightedConcat": (
        FusionRule("sum", "equal", (2, 3), sizes=("equal",), channels_as=""),
        ("dimension",),
        {"dimension": "-"},
    ),
    "SimFusion3": (
        FusionRule("arg:out_channels", "input:1", (3,)),
        ("in_channel_list", "out_channels"),
        {"in_channel_list": "c1", "out_channels": "c2"},
    ),
    "CGAFusionLike": (
        FusionRule("equal", "equal", (2,), "equal", ("equal",), "int"),
        ("dim", "reduction"),
        {"dim": "c1", "reduction": "-"},
    ),
    "UpAdd": (FusionRule("arg:c2", "input:0", (2,), "equal", ("down",), "int"), ("c1", "c2"), None),
    "SDILike": (FusionRule("first", "input:0"), ("channels",), {"channels": "c1"}),
    "PickSecond": (FusionRule("input:1", "input:1"), ("inc",), {"inc": "c1"}),
}


@pytest.fixture
def records(tmp_path):
    return {name: _record(tmp_path, name, *spec) for name, spec in RECORDS.items()}


def test_a_record_reads_back_as_written(records):
    assert records["SimFusion3"].fusion == RECORDS["SimFusion3"][0]
    assert records["CGAFusionLike"].fusion.channels_as == "int"


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_adapter_builds_the_class_from_parse_models_arguments(records, name):
    import torch

    namespace: dict = {}
    exec(compile((USER_MODULES / "fusion.py").read_text(), "fusion.py", "exec"), namespace)
    exec(adapter_source(records[name], name), namespace)
    adapter = namespace[name]
    widths = [32, 32] if records[name].fusion.widths == "equal" else [24, 40, 56]
    if name == "WeightedConcat":
        widths = [24, 40]
    c2, args = adapter.yolopatch_fusion(widths, [64] if records[name].fusion.out_param else [], lambda c: c)
    sizes = [16, 8] if name == "UpAdd" else [16] * len(widths)
    out = adapter(*args)([torch.randn(1, w, s, s) for w, s in zip(widths, sizes, strict=True)])
    assert out.shape[1] == c2


# --- apply -----------------------------------------------------------------------------------------------------


def _apply(text: str, layers: str, op: UserOp, **options) -> str:
    result = apply_operator(text, layers, ApplyOptions(op=as_operator(op), **options), "m.yaml")
    return result.text


def _rows(text: str) -> list[tuple]:
    return parse_model_yaml(text, "m.yaml").logical_rows()


def test_a_sum_rule_replaces_every_concat_keeping_from_and_channels(records):
    new = _apply(EXAMPLE, "Concat", records["WeightedConcat"])
    old_rows, new_rows = _rows(EXAMPLE), _rows(new)
    changed = [i for i, (a, b) in enumerate(zip(old_rows, new_rows, strict=True)) if a != b]
    assert changed == [12, 16, 19, 22]
    assert [new_rows[i][0] for i in changed] == [old_rows[i][0] for i in changed]
    assert [new_rows[i][2] for i in changed] == ["WeightedConcat"] * 4
    assert [new_rows[i][3] for i in changed] == [()] * 4
    assert _apply(new, "Concat", records["WeightedConcat"]) == new  # applying twice equals applying once


def test_an_argument_rule_gets_the_argument_that_keeps_the_rows_channels_at_every_scale(records):
    text = (Path(__file__).parent / "fixtures" / "ultralytics" / "scales.yaml").read_text()
    new = _apply(text, "10", records["SimFusion3"], insert=True, sources=(4, 6))
    row = _rows(new)[11]
    assert row[0] == (-1, 4, 6) and row[2] == "SimFusion3"
    from helpers import geometries_of

    from yolopatch.channels import simulate

    operator = [as_operator(records["SimFusion3"])]
    old_geos = geometries_of(parse_model_yaml(text, "m.yaml").values)
    for scale, geo in geometries_of(parse_model_yaml(new, "m.yaml").values, None, operator).items():
        before, after = simulate(_rows(text), old_geos[scale]), simulate(_rows(new), geo)
        assert after.shapes[11].c2 == before.shapes[10].c2, scale
        assert after.shapes[11].stride == before.shapes[10].stride
    assert _rows(new)[-1][0] == (11, 14)  # Detect reads the new row and the renumbered P4 row


REFUSALS = [
    ("single input row", "CGAFusionLike", "2", {}, "reads one"),
    ("not a concat", "CGAFusionLike", "24", {}, "replaces a Concat"),
    ("count", "SimFusion3", "12", {}, "takes 3 inputs, and this row has 2"),
    ("sizes", "UpAdd", "12", {}, "sizes down"),
    ("widths", "CGAFusionLike", "17", {"insert": True, "sources": (20,)}, "after it"),
    ("stride", "PickSecond", "17", {"insert": True, "sources": (14,)}, "expect stride 8"),
    ("widths at insert", "CGAFusionLike", "13", {"insert": True, "sources": (4,)}, "equal input widths"),
]


@pytest.mark.parametrize(
    ("name", "layers", "options", "words"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_apply_refuses_a_fusion_row_that_cannot_work_and_writes_nothing(
    records, name, layers, options, words
):
    with pytest.raises(YolopatchError) as error:
        _apply(EXAMPLE, layers, records[name], **options)
    if words:
        assert words in str(error.value)
    assert "cannot" in str(error.value)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"sources": (4,)}, "with --insert"),
        ({"insert": True}, "name them with --from"),
        ({"insert": True, "sources": (99,)}, "layers 0 to 24"),
    ],
)
def test_from_is_a_usage_error_outside_an_inserted_fusion_row(records, options, words):
    with pytest.raises(YolopatchError, match=words):
        _apply(EXAMPLE, "13", records["SDILike"], **options)


def test_an_inserted_row_renumbers_every_later_from(records):
    new = _apply(EXAMPLE, "17", records["SDILike"], insert=True, sources=(4,))
    rows = _rows(new)
    assert rows[18] == ((-1, 4), 1, "SDILike", ())
    assert rows[-1][0] == (18, 21, 24)  # Detect: the new row (P3), then P4 and P5 renumbered


# --- parse_model's fusion branch, inject and revert ---------------------------------------------------------------

PARSE_MODEL = """def parse_model(d, ch):
    for i, (f, n, m, args) in enumerate(d):
        if m in {Conv, C3}:
            c1, c2 = ch[f], args[0]
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
{tail}        ch.append(c2)
"""
TAILS = {
    "elif": "        elif m is Concat:\n            c2 = sum(ch[x] for x in f)\n        else:\n            c2 = ch[f]\n",
    "else": "        else:\n            c2 = ch[f]\n",
    "none": "",
}


@pytest.mark.parametrize("tail", sorted(TAILS))
def test_the_fusion_branch_goes_after_the_channel_branch_and_comes_out_byte_for_byte(tail):
    text = PARSE_MODEL.replace("{tail}", TAILS[tail])
    at, branch = fusion_branch(text, ast.parse(text), Path("yolo.py"), "\n")
    new = text[:at] + branch + text[at:]
    ast.parse(new)
    assert "lambda c: make_divisible(c * gw, 8)" in branch and FUSION_MARK in branch
    assert fusion_branch(new, ast.parse(new), Path("yolo.py"), "\n") is None  # once
    start, end = fusion_branch_span(new)
    assert new[:start] + new[end:] == text


def test_inject_registers_a_fusion_class_by_the_branch_not_the_collection(checkout, records, tmp_path):
    from helpers import inject_into, revert_from

    repo = checkout("master")
    before = snapshot(repo)
    ops = [as_operator(records["CGAFusionLike"]), as_operator(records["WeightedConcat"])]
    plan = inject_into(repo, ops)
    for change in plan.changes:
        change.path.write_text(change.new) if change.new is not None else change.path.unlink()
    yolo = (repo / "models" / "yolo.py").read_text()
    assert yolo.count(FUSION_MARK) == 1
    collection = yolo[yolo.index("if m in") : yolo.index(":", yolo.index("if m in"))]
    assert "CGAFusionLike" not in collection
    assert not inject_into(repo, ops).changed  # injecting twice changes nothing
    one = revert_from(repo, ["CGAFusionLike"])
    assert FUSION_MARK in [c for c in one.changes if c.path.name == "yolo.py"][0].new  # WeightedConcat stays
    plan = revert_from(repo)
    for change in plan.changes:
        change.path.write_text(change.new) if change.new is not None else change.path.unlink()
    assert snapshot(repo) == before


# --- the targets' own model classes ------------------------------------------------------------------------------


def _learn_real(work: Path) -> None:
    shutil.copy(USER_MODULES / "fusion.py", work / "fusion.py")
    for cls in ("WeightedConcat", "SimFusion3", "CGAFusionLike"):
        result = run_cli("ops", "add", f"fusion.py:{cls}", cwd=work)
        assert result.returncode == 0, result.stderr


def _own_build_agrees_and_revert_restores(package: Path, work: Path, env: dict, img: str) -> None:
    """The checkout's own Model builds the yaml with the built-in builder's parameters (and its own summary
    line says so); the revert restores every byte."""
    before = snapshot(package)
    builtin = checked(run_cli("check", "m.yaml", "--img", img, "--json", cwd=work, env=env))
    result = run_cli("inject", str(package), "--for", "m.yaml", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    own = checked(
        run_cli("check", "m.yaml", "--repo", str(package), "--img", img, "--json", cwd=work, env=env)
    )
    assert own["params"] == builtin["params"] and f"{own['params']} parameters" in own["reference"]
    assert run_cli("inject", str(package), "--revert", cwd=work, env=env).returncode == 0
    assert snapshot(package) == before


def _real_work(tmp_path: Path) -> tuple[Path, dict]:
    work = tmp_path / "work"
    work.mkdir()
    _learn_real(work)
    return work, {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}


def test_yolov5_own_model_builds_fusion_rows_and_revert_restores_every_byte(yolov5_packages, tmp_path):
    package = Path(shutil.copytree(yolov5_packages["7.0.14"], tmp_path / "site" / "yolov5"))
    work, env = _real_work(tmp_path)
    (work / "m.yaml").write_text(EXAMPLE)
    for layers, op in [("12,16", "CGAFusionLike"), ("19,22", "WeightedConcat")]:
        result = run_cli("apply", "m.yaml", "-l", layers, "--op", op, "--in-place", cwd=work)
        assert result.returncode == 0, result.stderr
    _own_build_agrees_and_revert_restores(package, work, env, "128")


def test_ultralytics_own_model_builds_fusion_rows_at_two_scales_and_revert_restores_every_byte(
    ultralytics_packages, tmp_path
):
    environment = Environment(tmp_path, ultralytics_packages["8.4.190"], "checkout")
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    _learn_real(work)
    shutil.copy(environment.package / "cfg/models/11/yolo11.yaml", work / "y.yaml")
    for args in (
        ["-l", "Concat", "--op", "WeightedConcat"],
        ["-l", "16", "--insert", "--from", "4,6", "--op", "SimFusion3"],
    ):
        result = run_cli("apply", "y.yaml", *args, "--in-place", cwd=work)
        assert result.returncode == 0, result.stderr
    result = environment.yolopatch("inject", "--for", "y.yaml", cwd=work)
    assert result.returncode == 0, result.stderr
    for scale in ("n", "s"):
        own = checked(
            environment.yolopatch("check", "y.yaml", "--scale", scale, "--img", "128", "--json", cwd=work)
        )
        assert f"{own['params']:,} parameters" in own["reference"]  # ultralytics' own summary line
        assert any(layer["module"] == "SimFusion3" for layer in own["layers"])
    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before


@pytest.mark.exhaustive  # ~35 s: the branch text is the YOLOv5 one (make_divisible(c * gw, 8)), tested above
def test_yolov9_own_model_builds_fusion_rows_and_revert_restores_every_byte(wky_packages, tmp_path):
    package = Path(shutil.copytree(wky_packages["yolo9"], tmp_path / "site" / "yolo9"))
    work, env = _real_work(tmp_path)
    shutil.copy(package / "models" / "detect" / "gelan-t.yaml", work / "m.yaml")
    result = run_cli("apply", "m.yaml", "-l", "Concat", "--op", "WeightedConcat", "--in-place", cwd=work)
    assert result.returncode == 0, result.stderr
    _own_build_agrees_and_revert_restores(package, work, env, "64")
