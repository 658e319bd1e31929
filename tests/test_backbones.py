"""Whole backbones (`ops add` of a class, a factory function or `timm:NAME` whose forward returns a list of
maps), `apply --backbone`, the one parse_model branch (or ultralytics' own TorchVision/Index collection),
and the targets' own model classes building the result.

Our own classes in the shapes of real ones (tests/fixtures/user_modules/backbones.py: `width_list` and
`channel` conventions, a factory function, one without stride 8...) and a stand-in for timm
(tests/fixtures/timm_standin: no network, no torchvision).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import EXAMPLE, FIXTURES, geometry_of, run_cli, snapshot
from user_module_case import USER_MODULES

from yolopatch.channels import simulate
from yolopatch.commands.apply import apply_operator
from yolopatch.commands.ops import add_operator
from yolopatch.edit.options import ApplyOptions
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.index import INDEX
from yolopatch.targets.backbones import (
    BACKBONE_MARK,
    backbone_branch_edits,
    backbone_branch_removal,
    list_collection,
)
from yolopatch.userop.adapter import as_operator
from yolopatch.userop.record import UserOp, load, record_text
from yolopatch.userop.rule import BackboneSpec, Rule

TIMM = FIXTURES / "timm_standin"
BACKBONES = USER_MODULES / "backbones.py"


# --- ops add: learned right, or refused with the reason --------------------------------------------------------


@dataclass(frozen=True)
class Case:
    spec: str  # CLASS of backbones.py, or timm:NAME
    widths: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    refused: str = ""  # words of the refusal


CASES = [
    Case("WidthListNet", (48, 80, 128), (8, 16, 32)),
    Case("ChannelNet", (24, 40, 64, 96), (4, 8, 16, 32)),
    Case("tiny_backbone", (24, 40, 64), (8, 16, 32)),
    Case("timm:standin_net", (40, 80, 160), (8, 16, 32)),
    Case("timm:standin_vit", (64, 96, 128), (8, 16, 32)),
    Case("NoStride8Net", refused="no output at stride 8"),
    Case("timm:standin_m0", refused="no output at stride 8"),
    Case("CwdWeightsNet", refused="relative to the working folder"),
    Case("NeedsMissingNet", refused="needs the package yolopatch_absent_package"),
    Case("WrongWidthListNet", refused="its width_list says [32, 64, 128]"),
    Case("timm:no_such_model", refused="timm has no model of that name"),
    Case("AFPNLike", refused="not a fusion class"),
]


@pytest.fixture
def work(tmp_path, monkeypatch):
    shutil.copy(BACKBONES, tmp_path / "backbones.py")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TIMM), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


@pytest.mark.parametrize("case", CASES, ids=[c.spec for c in CASES])
def test_ops_add_learns_a_backbones_outputs_or_refuses_saying_why(work, case):
    spec = case.spec if case.spec.startswith("timm:") else f"backbones.py:{case.spec}"
    if case.refused:
        with pytest.raises(YolopatchError, match=None) as caught:
            add_operator(spec, work)
        assert case.refused in str(caught.value)
        return
    result = add_operator(spec, work)
    assert result.op.backbone is not None
    assert (result.op.backbone.widths, result.op.backbone.strides) == (case.widths, case.strides)
    assert result.op.rule == Rule("backbone")
    reread = load_text(work, result)
    assert reread.backbone == result.op.backbone
    assert reread.file == result.op.file


def load_text(work: Path, result) -> UserOp:
    (work / "yolopatch.toml").write_text(result.change.new)
    return load(work / "yolopatch.toml")[result.op.name]


def test_a_timm_backbone_is_built_with_the_out_indices_of_strides_8_16_32_and_pretrained_off(work):
    result = add_operator("timm:standin_vit", work)
    assert dict(result.op.defaults) == {"out_indices": [1, 2, 3], "pretrained": False}
    source = result.operator.generated.body
    assert "timm.create_model('standin_vit', features_only=True, out_indices=out_indices" in source
    assert "pretrained=pretrained" in source


def test_the_cli_says_what_it_learned_and_the_next_step(work):
    result = run_cli("ops", "add", "backbones.py:ChannelNet", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "24 ch /4, 40 ch /8, 64 ch /16, 96 ch /32" in result.stdout
    assert "agrees with its own channel [24, 40, 64, 96]" in result.stdout
    assert "apply MODEL.yaml --backbone ChannelNet" in result.stdout


# --- apply --backbone ------------------------------------------------------------------------------------------


def _record(folder: Path, name: str, cls: str, widths, strides) -> UserOp:
    """A recorded backbone (the class's defaults: no options), added to the folder's yolopatch.toml."""
    op = UserOp(
        name=name,
        file=folder / "backbones.py",
        cls=cls,
        rule=Rule("backbone"),
        params=(),
        roles={},
        defaults={},
        config=folder / "yolopatch.toml",
        backbone=BackboneSpec(tuple(widths), tuple(strides)),
    )
    config = folder / "yolopatch.toml"
    config.write_text(record_text(config.read_text() if config.exists() else None, op))
    return op


@pytest.fixture
def records(tmp_path):
    shutil.copy(BACKBONES, tmp_path / "backbones.py")
    return {
        "Net3": _record(tmp_path, "Net3", "WidthListNet", (48, 80, 128), (8, 16, 32)),
        "Net4": _record(tmp_path, "Net4", "ChannelNet", (24, 40, 64, 96), (4, 8, 16, 32)),
    }


def _apply(text: str, op: UserOp, levels=(8, 16, 32)) -> str:
    options = ApplyOptions(as_operator(op), levels=levels, users=(as_operator(op),))
    return apply_operator(text, "backbone", options, "m.yaml").text


def _rows(text: str) -> list[tuple]:
    return [tuple(row) for row in parse_model_yaml(text, "m.yaml").logical_rows()]


YOLOV5_AFTER = """backbone:
  # [from, number, module, args]
  [[-1, 1, Net4, [96]],  # 0
   [0, 1, Index, [40, 1]],  # 1-P3/8
   [0, 1, Index, [64, 2]],  # 2-P4/16
   [0, 1, Index, [96, 3]],  # 3-P5/32
   [-1, 1, SPPF, [1024, 5]],  # 4
  ]
"""


def test_yolov5s_backbone_rows_become_one_row_and_an_index_per_level(records):
    text = _apply(EXAMPLE, records["Net4"])
    assert YOLOV5_AFTER in text
    rows = _rows(text)
    assert rows[7][0] == (-1, 2) and rows[11][0] == (-1, 1)  # the Concats read P4 and P3 as before
    assert rows[-1][0] == (12, 15, 18) and rows[-1][2] == "Detect"
    # every byte after the backbone that is no index stays: comments renumbered, layout kept
    assert "# 12 (P3/8 output)" in text and "# join stride-8 backbone features" in text
    assert "i + 4" not in text
    assert _apply(text, records["Net4"]) == text  # a second run changes nothing


YOLOV8 = """# ultralytics' yolov8.yaml, its rows as 8.4.190 ships them
nc: 80 # number of classes
scales: # [depth, width, max_channels]
  n: [0.33, 0.25, 1024]
  s: [0.33, 0.50, 1024]
  x: [1.00, 1.25, 512]

backbone:
  # [from, repeats, module, args]
  - [-1, 1, Conv, [64, 3, 2]] # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]] # 1-P2/4
  - [-1, 3, C2f, [128, True]]
  - [-1, 1, Conv, [256, 3, 2]] # 3-P3/8
  - [-1, 6, C2f, [256, True]]
  - [-1, 1, Conv, [512, 3, 2]] # 5-P4/16
  - [-1, 6, C2f, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]] # 7-P5/32
  - [-1, 3, C2f, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]] # 9

head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]] # cat backbone P4
  - [-1, 3, C2f, [512]] # 12

  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]] # cat backbone P3
  - [-1, 3, C2f, [256]] # 15 (P3/8-small)

  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 12], 1, Concat, [1]] # cat head P4
  - [-1, 3, C2f, [512]] # 18 (P4/16-medium)

  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 9], 1, Concat, [1]] # cat head P5
  - [-1, 3, C2f, [1024]] # 21 (P5/32-large)

  - [[15, 18, 21], 1, Detect, [nc]] # Detect(P3, P4, P5)
"""

YOLOV8_AFTER = """  - [-1, 1, Net3, [128]] # 0
  - [0, 1, Index, [48, 0]] # 1-P3/8
  - [0, 1, Index, [80, 1]] # 2-P4/16
  - [0, 1, Index, [128, 2]] # 3-P5/32
  - [-1, 1, SPPF, [1024, 5]] # 4
"""


@pytest.mark.parametrize("levels", [(8, 16, 32), (16, 32)])
def test_every_later_row_keeps_its_stride_and_reads_the_backbones_real_widths(records, levels):
    from helpers import geometries_of

    text = YOLOV8
    op = records["Net3"]
    if levels == (16, 32):  # the head reads P3: the new backbone must give it, or it is refused
        with pytest.raises(YolopatchError, match="reads layer .* not among --levels P4,P5"):
            _apply(text, op, levels)
        return
    new = _apply(text, op, levels)
    assert YOLOV8_AFTER in new and "- [[-1, 2], 1, Concat, [1]] # cat backbone P4" in new
    parsed = parse_model_yaml(new, "m.yaml")
    for scale, geo in geometries_of(parsed.values, operators=(as_operator(op),)).items():
        shapes = simulate(parsed.logical_rows(), geo).shapes
        assert [(s.c2, s.stride) for s in shapes[1:4]] == [(48, 8), (80, 16), (128, 32)], scale  # unscaled
        detect = parsed.logical_rows()[-1][0]
        assert [shapes[i].stride for i in detect] == [8, 16, 32], scale


@pytest.mark.parametrize(
    ("fixture", "reads"),
    [
        ("wky/yolov7-shaped.yaml", {"route backbone P4": 2, "route backbone P3": 1}),  # ELAN stages, MP rows
    ],
)
def test_stages_with_branch_convs_give_their_output_rows_to_the_neck(records, fixture, reads):
    text = (FIXTURES / fixture).read_text()
    new = _apply(text, records["Net3"])
    layers = parse_model_yaml(new, "m.yaml").layers
    for comment, source in reads.items():
        row = next(
            layer
            for layer in layers
            if layer.comment and comment in new[layer.comment.start : layer.comment.end]
        )
        assert row.source == source


def test_yolov9s_silence_row_stays_before_the_backbone_and_its_auxiliary_branch_reads_the_levels(records):
    """YOLOv9's row 0 passes the image through (Silence) and its auxiliary branch reads it: it stays, the
    backbone row follows it, and the CBLinear rows that read the levels read the Index rows."""
    text = (FIXTURES / "wky" / "yolov9-shaped.yaml").read_text()
    new = _apply(text, records["Net3"])
    rows = _rows(new)
    assert rows[:5] == [
        (-1, 1, "Silence", ()),
        (-1, 1, "Net3", (128,)),
        (1, 1, "Index", (48, 0)),
        (1, 1, "Index", (80, 1)),
        (1, 1, "Index", (128, 2)),
    ]
    assert "   [-1, 1, Silence, []],  # 0\n" in new and "   [1, 1, Index, [48, 0]],  # 2-P3/8\n" in new
    layers = {row[2]: row for row in rows}
    assert [row[0] for row in rows if row[2] == "CBLinear"] == [2, 3, 4]  # P3, P4, P5: rows 5, 7, 9 before
    assert rows[21][:3] == (0, 1, "Conv")  # the auxiliary branch still reads the image, through Silence
    assert layers["DualDDetect"][0] == (26, 29, 32, 11, 14, 17)
    geometry = geometry_of(parse_model_yaml(new, "m.yaml").values, operators=[as_operator(records["Net3"])])
    shapes = simulate(parse_model_yaml(new, "m.yaml").logical_rows(), geometry, "m.yaml").shapes
    assert [shapes[i].stride for i in layers["DualDDetect"][0]] == [8, 16, 32, 8, 16, 32]


def test_a_level_the_backbone_lacks_and_a_non_backbone_are_refused(records):
    with pytest.raises(YolopatchError, match="no output at stride 64"):
        _apply(EXAMPLE, records["Net3"], (8, 16, 64))
    folder = records["Net3"].config.parent
    (folder / "m.yaml").write_text(EXAMPLE)
    result = run_cli("apply", "m.yaml", "--backbone", "SE", "--diff", cwd=folder)
    assert result.returncode == 2 and "--backbone SE: not a backbone" in result.stderr
    result = run_cli("apply", "m.yaml", "--layers", "3", "--op", "Net3", "--diff", cwd=folder)
    assert result.returncode == 2 and "swap it in with --backbone Net3" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["--backbone", "Net3", "--layers", "3"],
        ["--levels", "P3,P4", "--layers", "3"],
        ["--backbone", "Net3", "--levels", "Q9"],
    ],
)
def test_backbone_usage_errors_exit_2(records, args):
    folder = records["Net3"].config.parent
    (folder / "m.yaml").write_text(EXAMPLE)
    result = run_cli("apply", "m.yaml", *args, "--diff", cwd=folder)
    assert result.returncode == 2, result.stdout + result.stderr


# --- registration: one branch, or ultralytics' own collection ----------------------------------------------------

PARSE_MODEL = """def parse_model(d, ch):
    for i, (f, n, m, args) in enumerate(d):
        if m in {Conv, C3}:
            c1, c2 = ch[f], args[0]
            c2 = make_divisible(c2 * gw, 8)
        elif m is Concat:
            c2 = sum(ch[x] for x in f)
        else:
            c2 = ch[f]
"""


def test_the_backbone_branch_goes_in_once_and_comes_out_byte_for_byte():
    import ast

    actions: list[str] = []
    edits = backbone_branch_edits(
        PARSE_MODEL, ast.parse(PARSE_MODEL), Path("yolo.py"), "yolo.py", ["Net3"], actions
    )
    from yolopatch.splice import splice

    patched = splice(PARSE_MODEL, edits)
    assert BACKBONE_MARK in patched and "c2, args = args[0], args[1:]" in patched
    compile(patched, "yolo.py", "exec")
    assert backbone_branch_edits(patched, ast.parse(patched), Path("yolo.py"), "yolo.py", ["Net3"], []) == []
    assert splice(patched, backbone_branch_removal(patched, "yolo.py", [], [])) == PARSE_MODEL


def test_ultralytics_own_torchvision_branch_is_found_only_where_it_passes_the_args_after_the_first():
    import ast

    modern = "def parse_model(d):\n    if m in {Conv}:\n        pass\n    elif m in frozenset({TorchVision, Index}):\n        c2 = args[0]\n        args = [*args[1:]]\n"
    older = modern.replace("[*args[1:]]", "[c1, c2, *args[1:]]")
    assert list_collection(ast.parse(modern)) is not None
    assert list_collection(ast.parse(older)) is None


@pytest.mark.parametrize("family", ["master", "yolov7", "yolov9"])
def test_every_checkout_family_gets_one_branch_and_index_and_revert_restores_every_byte(
    checkout, records, family
):
    from helpers import inject_into, revert_from

    repo = checkout(family)
    before = snapshot(repo)
    ops = [as_operator(records["Net3"]), as_operator(records["Net4"]), INDEX]

    def write(plan) -> None:
        for change in plan.changes:
            change.path.write_text(change.new) if change.new is not None else change.path.unlink()

    write(inject_into(repo, ops))
    yolo = (repo / "models" / "yolo.py").read_text()
    assert yolo.count(BACKBONE_MARK) == 1
    collection = yolo[yolo.index("if m in") : yolo.index(":", yolo.index("if m in"))]
    assert "Net3" not in collection and "Index" not in collection
    assert "class Index(nn.Module)" in (repo / "models" / "common.py").read_text()
    assert not inject_into(repo, ops).changed  # injecting twice changes nothing
    one = revert_from(repo, ["Net3"])
    assert (
        BACKBONE_MARK in next(c for c in one.changes if c.path.name == "yolo.py").new
    )  # Net4 still needs it
    write(revert_from(repo))
    assert snapshot(repo) == before


def test_index_is_ultralytics_own_name_and_semantics():
    import torch

    from yolopatch.templates.index import Index

    maps = [torch.zeros(1, 2, 4, 4), torch.ones(1, 3, 2, 2)]
    assert Index(1)(maps) is maps[1] and INDEX.name == "Index"
