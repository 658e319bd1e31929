"""The Target interface and its registry, and YOLOv7 and YOLOv9 through it, on our own yamls and checkouts
in those families' shapes (the real repositories: test_targets_real.py; what every family does, each on its
own fixtures: targets/test_contract.py).

The CLI and the core name no family; the families' other yaml shapes are claimed by the right one; the
YOLOv7/YOLOv9 tables simulate their traps (MP, SP, ReOrg, Silence at row 0, CBLinear lists, CBFuse's last
input); inject registers in their (c1, c2) collection only.
"""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, ROOT, check_yaml, geometry_of, make_package, run_cli, snapshot

from yolopatch.channels import simulate
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import get_operator
from yolopatch.targets.registry import TARGETS, beside, enclosing, locate, target_for, target_named

WKY = FIXTURES / "wky"
V7, V9 = (WKY / "yolov7-shaped.yaml").read_text(), (WKY / "yolov9-shaped.yaml").read_text()


def _family(text: str) -> str:
    return target_for(parse_model_yaml(text, "<test>").values).name


def _v9_body_of_v7(text: str) -> str:
    """YOLOv9's yolov7-af shape: YOLOv7's body with `anchors: 3` and an anchor-free Detect head."""
    head, _, rest = text.partition("# anchors\n")
    rows = rest.split("# backbone", 1)[1].replace("IDetect, [nc, anchors]", "Detect, [nc]")
    rows = rows.replace("RepConv", "Conv")
    return f"{head}anchors: 3\n\n# backbone{rows}"


def _v7_without_signature(text: str) -> str:
    """YOLOv7's deploy shape: only Conv, MP, SP, Concat, nn.Upsample and Detect, anchors as pairs."""
    return (
        text.replace("RepConv", "Conv")
        .replace("IDetect", "Detect")
        .replace("SPPCSPC, [256]", "Conv, [256, 1, 1]")
    )


@pytest.mark.parametrize(
    ("text", "family"),
    [
        pytest.param(_v7_without_signature(V7), "YOLOv7", id="yolov7-deploy-mp-sp"),
        pytest.param(_v9_body_of_v7(V7), "YOLOv9", id="yolov9-yolov7-af"),
    ],
)
def test_a_yaml_is_claimed_by_its_own_family(text, family):
    assert _family(text) == family


# Every module outside the families' packages and the templates (which are pasted into the families' code).
CORE = sorted(
    str(p.relative_to(ROOT / "yolopatch"))
    for p in (ROOT / "yolopatch").rglob("*.py")
    if p.relative_to(ROOT / "yolopatch").parts[0] not in ("targets", "templates")
)


@pytest.mark.parametrize("module", CORE)
def test_no_family_is_named_in_the_cli_and_the_core(module):
    """The acceptance test of the interface: a family lives in its package under yolopatch/targets/."""
    names = {t.name for t in TARGETS} | {t.installable for t in TARGETS if t.installable}
    names |= {t.layout.package for t in TARGETS if hasattr(t, "layout")}
    text = (ROOT / "yolopatch" / module).read_text(encoding="utf-8").lower()
    assert [n for n in sorted(names) if n.lower() in text] == []


def test_a_yolov5_v3_checkout_is_located_as_yolov5(checkout):
    repo = checkout("v3")
    for place in (repo, repo / "models"):
        assert locate(place)[0].name == "YOLOv5"
    assert [t.name for t in TARGETS if not t.fallback and t.locate(repo) is not None] == []


def _shapes(text: str) -> list[tuple[int | None, int | None]]:
    parsed = parse_model_yaml(text, "<test>")
    shapes = simulate(parsed.logical_rows(), geometry_of(parsed.values), "<test>").shapes
    return [(s.c2, None if s.stride is None else int(s.stride)) for s in shapes]


@pytest.mark.parametrize(
    ("text", "layer", "channels", "stride"),
    [
        pytest.param(V9, 0, 3, 1, id="v9-silence-passes-the-image"),
        pytest.param(V9, 26, 32, 2, id="v9-from-0-reads-the-image"),
        pytest.param(V9, 3, 64, 4, id="v9-repncspelan4-first-argument"),
        pytest.param(V9, 8, 256, 32, id="v9-aconv-halves"),
        pytest.param(V9, 23, None, 8, id="v9-cblinear-is-a-list"),
        pytest.param(V9, 30, 128, 8, id="v9-cbfuse-takes-its-last-input"),
        pytest.param(V9, 36, 256, 32, id="v9-cbfuse-last-input-size"),
        pytest.param(V7, 8, 64, 8, id="v7-mp-keeps-channels-halves-size"),
        pytest.param(V7, 12, 128, 8, id="v7-elan-concat"),
        pytest.param(V7, 25, 256, 32, id="v7-sppcspc"),
        pytest.param(V7, 46, 128, 16, id="v7-sp-keeps-size"),
        pytest.param(V7, 52, 512, 32, id="v7-repconv"),
    ],
)
def test_yolov7_and_yolov9_tables_give_parse_models_channels_and_strides(text, layer, channels, stride):
    assert _shapes(text)[layer] == (channels, stride)


def test_reorg_gives_four_times_its_input_at_stride_2():
    text = V7.replace("[[-1, 1, Conv, [32, 3, 1]],  # 0", "[[-1, 1, ReOrg, []],  # 0").replace(
        "[-1, 1, Conv, [64, 3, 2]],  # 1-P1/2", "[-1, 1, Conv, [64, 3, 1]],  # 1"
    )
    assert _shapes(text)[:2] == [(12, 2), (64, 2)]


def test_inserting_in_a_yolov9_yaml_renumbers_cblinear_cbfuse_and_both_head_branches():
    result = apply_operator(V9, "9", ApplyOptions(get_operator("cbam"), insert=True), name="v9.yaml")
    rows = parse_model_yaml(result.text, "v9.yaml").logical_rows()
    assert rows[10][2] == "CBAM" and list(rows[10][3]) == [256]
    assert [rows[i][0] for i in (24, 25, 26, 27)] == [5, 7, 10, 0]  # 9's readers read the CBAM; 0 stays
    assert list(rows[31][0]) == [24, 25, 26, -1]
    assert list(rows[-1][0]) == [32, 35, 38, 17, 20, 23]


@pytest.mark.parametrize(
    ("text", "layers", "insert", "reason"),
    [
        pytest.param(V9, "23", False, "a list of tensors", id="v9-cblinear"),
        pytest.param(V9, "23", True, "a list of tensors for CBFuse", id="v9-after-cblinear"),
        pytest.param(V9, "30", False, "takes several inputs", id="v9-cbfuse"),
        pytest.param(V9, "0", False, "passes the image through", id="v9-silence"),
        pytest.param(V7, "8", False, "not an output channel count", id="v7-mp"),
        pytest.param(V7, "53", True, "IDetect is the model's output", id="v7-after-head"),
    ],
)
def test_rows_that_cannot_take_an_operator_are_refused_with_their_reason(text, layers, insert, reason):
    from yolopatch.errors import YolopatchError

    with pytest.raises(YolopatchError, match=f"layer {layers} .*{reason}"):
        apply_operator(text, layers, ApplyOptions(get_operator("se"), insert=insert), name="m.yaml")


@pytest.mark.parametrize("text", [V7, V9], ids=["yolov7", "yolov9"])
@pytest.mark.parametrize("op", ["se", "cbam", "involution"])
def test_the_built_in_builder_builds_the_family_with_an_operator_inserted(text, op):
    layer = "25" if text is V7 else "9"
    result = apply_operator(text, layer, ApplyOptions(get_operator(op), insert=True), name="m.yaml")
    stock, patched = check_yaml(text, "stock", 64, 2), check_yaml(result.text, "patched", 64, 2)
    inserted = patched.layers[int(layer) + 1]
    assert inserted.module == get_operator(op).name
    assert patched.params == stock.params + inserted.params > stock.params


def _collections(yolo: Path) -> list[list[str]]:
    tree = ast.parse(yolo.read_text(encoding="utf-8"))
    return [
        [ast.unparse(e) for e in n.comparators[0].elts]
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare) and isinstance(n.comparators[0], (ast.List, ast.Set))
    ]


@pytest.mark.parametrize("fixture", ["yolov7", "yolov9"])
def test_inject_registers_in_the_c1_c2_collection_only(checkout, fixture):
    repo = checkout(fixture)
    before = _collections(repo / "models" / "yolo.py")
    injected = run_cli("inject", str(repo), "--op", "cbam,se")
    assert injected.returncode == 0, injected.stderr
    assert f"{fixture}" in injected.stdout and "--repo" in injected.stdout  # next step names this checkout
    after = _collections(repo / "models" / "yolo.py")
    assert after[0] == [*before[0], "CBAM", "SE"]
    assert after[1:] == before[1:]  # the "insert n" collection is left alone
    common = (repo / "models" / "common.py").read_text(encoding="utf-8")
    assert common.count("class CBAM(") == 1 and common.count("class SE(") == 1


def test_a_failed_inject_names_the_operator_asked_for_and_changes_nothing(checkout):
    repo = checkout("yolov9")
    yolo = repo / "models" / "yolo.py"
    yolo.write_text(yolo.read_text(encoding="utf-8").replace("Conv, AConv,", "AConv,"), encoding="utf-8")
    pristine = snapshot(repo)
    result = run_cli("inject", str(repo), "--op", "cbam")
    assert result.returncode == 1
    assert "add CBAM to" in result.stderr and "Involution" not in result.stderr
    assert snapshot(repo) == pristine


def test_check_repo_gives_each_yaml_the_activation_its_family_imported_with():
    """YOLOv5 v7.0's and YOLOv9's `activation:` sets Conv.default_act for the whole process; the build child
    puts the imported value back before each yaml."""
    import types

    from yolopatch.targets.checkout.child import default_activations, restore

    class Conv:
        default_act = "SiLU"

    class RepConvN:
        default_act = "SiLU too"

    yolo = types.SimpleNamespace(Conv=Conv, RepConvN=RepConvN, Concat=object, nn=types)
    imported = default_activations(yolo)
    Conv.default_act = RepConvN.default_act = "ReLU"  # what building gelan.yaml leaves behind
    restore(imported)
    assert (Conv.default_act, RepConvN.default_act) == ("SiLU", "SiLU too")


CHECKOUTS_BESIDE = [
    pytest.param(
        "YOLOv5", lambda root: shutil.copytree(FIXTURES / "checkouts" / "master", root), id="yolov5"
    ),
    pytest.param("ultralytics", make_package, id="ultralytics-clone"),
    pytest.param(
        "pytorchyolo",
        lambda root: shutil.copytree(FIXTURES / "darknet" / "pytorchyolo", root),
        id="pytorchyolo",
    ),
    pytest.param(
        "PyTorch_YOLOv4",
        lambda root: shutil.copytree(FIXTURES / "darknet" / "pytorch_yolov4", root),
        id="pytorch-yolov4",
    ),
    pytest.param(
        "PyTorch_YOLOv4",
        lambda root: shutil.copytree(FIXTURES / "darknet" / "yolov3_archive", root),
        id="yolov3-archive-root-models-py",
    ),
]


@pytest.mark.parametrize(("family", "make"), CHECKOUTS_BESIDE)
def test_a_checkout_of_every_layout_is_found_beside_the_model_and_around_a_file(tmp_path, family, make):
    """Next-step hints name the checkout at hand: a clone beside the model (`beside`), or the one a file
    sits in (`enclosing`), whichever layout it has."""
    root = tmp_path / "clone"
    make(root)
    target = target_named(family)
    assert beside(tmp_path, target) == root
    assert enclosing(root / "deeper" / "model.cfg") == root


def test_a_yolov9_checkout_beside_the_model_is_not_taken_for_yolov5s(tmp_path):
    """YOLOv5 claims any checkout of its layout that no other family marks as its own: beside the model, a
    YOLOv9 checkout is YOLOv9's, so a YOLOv5 model finds none there."""
    shutil.copytree(FIXTURES / "checkouts" / "yolov9", tmp_path / "yolov9")
    assert beside(tmp_path, target_named("YOLOv9")) == tmp_path / "yolov9"
    assert beside(tmp_path, target_named("YOLOv5")) is None
