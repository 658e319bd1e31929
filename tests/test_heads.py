"""Detection heads (#30, second part), for ultralytics: `ops add` of a subclass of its own Detect (recorded
with `kind = "head"` and the base it extends; a plain copy refused with the consequence and the fix),
`apply --layers Detect --op NAME` (only the module changes), inject into parse_model's own Detect
collection, and ultralytics' own DetectionModel building it with its strides and training it with its loss.

Our own head (tests/fixtures/user_modules/heads.py: a Detect subclass that overrides nothing but __init__).
"""

from __future__ import annotations

import ast
import re
import shutil

import pytest
from helpers import ROOT, STUBS, run_cli, snapshot
from test_ultralytics_real import Environment, checked
from user_module_case import USER_MODULES

from yolopatch.commands.apply import apply_operator
from yolopatch.commands.ops import add_operator
from yolopatch.edit.options import ApplyOptions
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.targets.backbones import BACKBONE_MARK
from yolopatch.targets.collections import FUSION_MARK, detect_collection, parse_model_of
from yolopatch.userop.adapter import adapter_source, as_operator
from yolopatch.userop.record import load
from yolopatch.userop.rule import Rule

HEADS = USER_MODULES / "heads.py"
DETECT_ROW = "  - [[16, 19, 22], 1, Detect, [nc]] # Detect(P3, P4, P5)"


@pytest.fixture
def work(tmp_path, monkeypatch):
    """heads.py in a folder; the probe that imports it finds torchvision's stand-in (ultralytics needs it)."""
    monkeypatch.setenv("PYTHONPATH", str(STUBS))
    shutil.copy(HEADS, tmp_path / "heads.py")
    return tmp_path


def test_a_detect_subclass_is_recorded_as_a_head_with_the_base_it_extends(work):
    result = add_operator("heads.py:ScaledDetect", work)
    assert result.op.head == "Detect" and result.op.rule == Rule("head")
    assert result.operator.head == "Detect"
    (work / "yolopatch.toml").write_text(result.change.new)
    text = (work / "yolopatch.toml").read_text()
    assert 'kind = "head"' in text and 'base = "Detect"' in text
    reread = load(work / "yolopatch.toml")["ScaledDetect"]
    assert reread.head == "Detect" and reread.rule == Rule("head")
    source = adapter_source(reread, "_ScaledDetectBase")
    assert "class ScaledDetect(_ScaledDetectBase):" in source and "__init__" not in source  # Detect's own


def test_a_plain_copy_of_a_head_is_refused_with_the_consequence_and_the_fix(work):
    with pytest.raises(YolopatchError) as caught:
        add_operator("heads.py:CopiedDetect", work)
    message = str(caught.value)
    assert "strides for it (they stay 0)" in message
    assert "subclass Detect" in message and "keep its cv2/cv3 outputs, or override forward_head" in message


def test_the_cli_says_what_it_learned_and_names_the_detect_row(work):
    result = run_cli("ops", "add", "heads.py:ScaledDetect", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "subclasses ultralytics' own Detect" in result.stdout
    assert "--layers Detect --op ScaledDetect" in result.stdout


def test_ops_shows_a_head_by_the_row_it_replaces_and_a_cfg_refuses_it(work):
    result = add_operator("heads.py:ScaledDetect", work)
    (work / "yolopatch.toml").write_text(result.change.new)
    shown = run_cli("ops", "ScaledDetect", cwd=work)
    assert shown.returncode == 0, shown.stderr
    cells = [line.split("│")[1:3] for line in shown.stdout.splitlines() if line.count("│") == 3]
    rows = {key.strip(): value.strip() for key, value in cells if key.strip()}  # each value's first line
    assert rows["yaml args"] == "the Detect row's own" and rows["replaces"].startswith("Detect rows (apply")
    assert not {"--into", "example row", "darknet .cfg", "options"} & set(rows)
    cfg = ROOT / "examples" / "yolov4-tiny-shaped.cfg"
    refused = run_cli(
        "apply", str(cfg), "--layers", "8", "--insert", "--op", "ScaledDetect", "-o", "x.cfg", cwd=work
    )
    assert refused.returncode == 1 and "ScaledDetect is a detection head (its Detect row's)" in refused.stderr
    assert not (work / "x.cfg").exists()


HEAD_SETS = [
    pytest.param({"hidc": 32}, "[nc, 32]", id="the-parameter-after-the-rows-own"),
    pytest.param({}, "[nc]", id="none"),
]


@pytest.mark.parametrize(("values", "args"), HEAD_SETS)
def test_set_gives_the_parameters_a_head_adds_between_the_rows_args_and_ch(work, values, args):
    op = as_operator(add_operator("heads.py:HiddenDetect", work).op)
    text = (
        "nc: 80\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]] # Detect(P3)\n"
    )
    result = apply_operator(text, "Detect", ApplyOptions(op=op, values=values))
    assert f"  - [[0], 1, HiddenDetect, {args}] # Detect(P3)\n" in result.text


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"nc": 3},
            "--set nc: HiddenDetect's row gives nc and parse_model appends the inputs' channels (ch)",
        ),
        ({"ch": 3}, "--set takes the parameters between them: hidc."),
    ],
)
def test_set_refuses_what_the_row_or_parse_model_gives(work, values, message):
    op = as_operator(add_operator("heads.py:HiddenDetect", work).op)
    text = "nc: 80\nbackbone:\n  - [-1, 1, Conv, [64, 3, 2]]\nhead:\n  - [[0], 1, Detect, [nc]]\n"
    with pytest.raises(OptionError, match=re.escape(message)):
        apply_operator(text, "Detect", ApplyOptions(op=op, values=values))


def test_a_forks_head_with_a_hidden_width_is_proved_with_it_on_8_3_253(ultralytics_packages, tmp_path):
    environment, before, work = _learned_head(
        ultralytics_packages, tmp_path, "HiddenDetect", "8.3.253", "v8/yolov8.yaml"
    )
    args = ("--layers", "Detect", "--op", "HiddenDetect", "--set", "hidc=32", "--in-place")
    result = run_cli("apply", "y.yaml", *args, cwd=work, env=environment.env)
    assert result.returncode == 0, result.stderr
    assert "note: HiddenDetect proved with the installed ultralytics" in result.stderr
    assert "- [[15, 18, 21], 1, HiddenDetect, [nc, 32]] # Detect(P3, P4, P5)" in (work / "y.yaml").read_text()
    assert snapshot(environment.package) == before


def _yolo11(ultralytics_packages) -> str:
    return (ultralytics_packages["8.4.190"] / "ultralytics/cfg/models/11/yolo11.yaml").read_text()


def test_apply_replaces_only_the_module_of_the_detect_row(work, ultralytics_packages):
    op = as_operator(add_operator("heads.py:ScaledDetect", work).op)
    text = _yolo11(ultralytics_packages)
    assert DETECT_ROW in text
    result = apply_operator(text, "Detect", ApplyOptions(op=op))
    assert result.text == text.replace(DETECT_ROW, DETECT_ROW.replace("Detect,", "ScaledDetect,"))
    assert result.selected == (23,)
    again = apply_operator(result.text, "Detect", ApplyOptions(op=op))
    assert again.text == result.text  # already patched: nothing changes
    with pytest.raises(YolopatchError, match="it replaces Detect rows only"):
        apply_operator(text, "22", ApplyOptions(op=op))


@pytest.mark.parametrize("version", ["8.4.190", "8.3.253"])
def test_the_detect_collection_is_the_one_that_passes_the_inputs_channels(ultralytics_packages, version):
    tasks = (ultralytics_packages[version] / "ultralytics/nn/tasks.py").read_text()
    collection = detect_collection(parse_model_of(ast.parse(tasks)))
    assert collection is not None
    names = [ast.unparse(e) for e in collection.elts]
    assert "Detect" in names and "Segment" in names and "RTDETRDecoder" not in names


BUILD = """
import torch
from ultralytics.cfg import get_cfg
from ultralytics.nn.modules import Detect
from ultralytics.nn.tasks import DetectionModel

model = DetectionModel("y.yaml", ch=3, verbose=False)
head = model.model[-1]
assert type(head).__name__ == "ScaledDetect" and isinstance(head, Detect)
assert model.stride.tolist() == [8.0, 16.0, 32.0], model.stride
model.args = get_cfg()
model.train()
batch = {"img": torch.rand(2, 3, 64, 64), "batch_idx": torch.tensor([0.0, 1.0]),
         "cls": torch.tensor([[1.0], [2.0]]), "bboxes": torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.4, 0.6, 0.3, 0.2]])}
loss, _ = model.loss(batch)
loss.sum().backward()
assert torch.isfinite(loss).all()
assert all(branch[0].scale.grad is not None for branch in head.cv2)
print("ok")
"""


def _learned_head(ultralytics_packages, tmp_path, name, version="8.4.190", stock="11/yolo11.yaml"):
    """A checkout of `version` (and its snapshot), and a work folder where `ops add` learned heads.py:NAME
    against it, with the `stock` yaml as y.yaml."""
    environment = Environment(tmp_path, ultralytics_packages[version], "checkout")
    before = snapshot(environment.package)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(HEADS, work / "heads.py")
    result = run_cli(
        "ops", "add", f"heads.py:{name}", "--repo", str(environment.checkout), cwd=work, env=environment.env
    )
    assert result.returncode == 0, result.stderr
    shutil.copy(environment.package / "cfg/models" / stock, work / "y.yaml")
    return environment, before, work


@pytest.mark.parametrize(
    ("version", "stock"),
    [("8.4.190", "11/yolo11.yaml"), ("8.3.253", "v8/yolov8.yaml")],
    ids=["8.4.190", "8.3.253"],
)
def test_ultralytics_own_model_builds_and_trains_the_head_and_revert_restores_every_byte(
    ultralytics_packages, tmp_path, version, stock
):
    environment, before, work = _learned_head(ultralytics_packages, tmp_path, "ScaledDetect", version, stock)
    result = run_cli(
        "apply",
        "y.yaml",
        "--layers",
        "Detect",
        "--op",
        "ScaledDetect",
        "--in-place",
        cwd=work,
        env=environment.env,
    )
    assert result.returncode == 0, result.stderr
    assert (
        "note: ScaledDetect proved with the installed ultralytics: its own model class builds it"
        in result.stderr
    )
    result = environment.yolopatch("inject", "--for", "y.yaml", cwd=work)
    assert result.returncode == 0, result.stderr
    assert "to parse_model's own Detect collection" in result.stdout
    assert f"note: ScaledDetect proved with the ultralytics checkout {environment.checkout}" in result.stderr
    tasks = (environment.package / "nn/tasks.py").read_text()
    names = [ast.unparse(e) for e in detect_collection(parse_model_of(ast.parse(tasks))).elts]  # type: ignore[union-attr]
    assert "ScaledDetect" in names
    assert BACKBONE_MARK not in tasks and FUSION_MARK not in tasks  # no branch of our own
    injected = snapshot(environment.package)
    again = environment.yolopatch("inject", "--for", "y.yaml", cwd=work)
    assert again.returncode == 0 and "nothing written" in again.stdout + again.stderr
    assert snapshot(environment.package) == injected
    (work / "build.py").write_text(BUILD)
    built = environment.run("build.py", cwd=work)
    assert built.returncode == 0 and "ok" in built.stdout, built.stderr[-2000:]
    own = checked(environment.yolopatch("check", "y.yaml", "--img", "128", "--json", cwd=work))
    assert f"{own['params']:,} parameters" in own["reference"]
    result = environment.yolopatch("inject", "--revert", cwd=work)
    assert result.returncode == 0, result.stderr
    assert snapshot(environment.package) == before


def test_a_head_whose_eval_output_is_not_detects_is_refused_before_anything_is_written(
    ultralytics_packages, tmp_path
):
    environment, before, work = _learned_head(ultralytics_packages, tmp_path, "BareEvalDetect")
    refused = [
        run_cli(
            "apply", "y.yaml", "--layers", "Detect", "--op", "BareEvalDetect", cwd=work, env=environment.env
        ),
        environment.yolopatch("inject", "--op", "BareEvalDetect", cwd=work),
        environment.yolopatch("inject", "--op", "BareEvalDetect", "--check", cwd=work),
    ]
    for result, name in zip(refused, ["y-bareevaldetect.yaml", "yolov8.yaml", "yolov8.yaml"], strict=True):
        assert result.returncode == 1, result.stdout + result.stderr
        assert "error: BareEvalDetect not proven, nothing written: " in result.stderr
        assert (
            f"{name}: BareEvalDetect's eval output has shapes (1, 6); ultralytics' own Detect gives"
            in result.stderr
        )
    assert not (work / "y-bareevaldetect.yaml").exists()
    assert snapshot(environment.package) == before
