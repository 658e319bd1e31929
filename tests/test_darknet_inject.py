"""`inject` into a PyTorch codebase that builds darknet cfgs (pytorchyolo), and `check MODEL.cfg --repo` with
its own Darknet class: on our stand-in package in its shape (tests/fixtures/darknet/pytorchyolo), and on the
real package from PyPI (marked real; downloaded into the test cache, never committed).

Both registrations (create_modules' dispatch and Darknet.forward's) are added for every section type the
operator's form uses, darknet's own `[avgpool]` and `[scale_channels]` for the native SE included, which
pytorchyolo otherwise builds as a silent identity."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, STUBS, run_cli, snapshot
from user_module_case import USER_MODULES

from yolopatch.darknet.measure import check_cfg
from yolopatch.files import write_changes
from yolopatch.formats.base import FormatRequest
from yolopatch.formats.registry import format_for
from yolopatch.operators.registry import get_operator
from yolopatch.targets.pytorchyolo.edits import find_sites
from yolopatch.targets.pytorchyolo.package import find_package, read_package
from yolopatch.targets.registry import locate

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()


@pytest.fixture
def standin(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "darknet" / "pytorchyolo", tmp_path / "repo"))


def _apply(text: str, layer: str, name: str, insert: bool) -> str:
    op = get_operator(name)
    fmt = format_for(Path("m.cfg"))
    assert fmt is not None
    values = {o.name: o.default for o in op.options}
    return fmt.apply(text, layer, FormatRequest(op, values, insert), "m.cfg").text


def _registered(root: Path) -> tuple[frozenset[str], frozenset[str]]:
    package = find_package(root)
    assert package is not None
    sites = find_sites(package, read_package(package))
    return sites.create.types, sites.forward.types


def test_inject_registers_every_section_type_in_both_dispatches_and_reverts_byte_for_byte(standin):
    pristine = snapshot(standin)
    target, where = locate(standin / "pytorchyolo")
    assert target.name == "pytorchyolo"
    plan = target.inject(where, [get_operator("se"), get_operator("involution")], False, "python")
    write_changes(plan.changes)
    create, forward = _registered(standin)
    for kind in ("avgpool", "scale_channels", "involution"):
        assert kind in create and kind in forward, kind
    text = (standin / "pytorchyolo" / "models.py").read_text()
    ast.parse(text)
    assert text.count("# yolopatch: SE") == 4 and text.count("# yolopatch: Involution") == 2
    assert not target.inject(where, [get_operator("se"), get_operator("involution")], False, "python").changed
    write_changes(target.revert(where, ["Involution"], False).changes)  # one operator: only its branches
    assert (
        _registered(standin)[0] >= {"avgpool", "scale_channels"}
        and "involution" not in _registered(standin)[0]
    )
    write_changes(target.revert(where, None, False).changes)
    assert snapshot(standin) == pristine


def test_a_branch_the_codebase_has_is_left_alone(standin):
    models = standin / "pytorchyolo" / "models.py"
    own = models.read_text().replace(
        '        elif module_def["type"] == "yolo":',
        '        elif module_def["type"] == "avgpool":\n            filters = output_filters[-1]\n'
        '        elif module_def["type"] == "yolo":',
        1,  # create_modules' (forward's comes later)
    )
    models.write_text(own)
    target, where = locate(standin)
    write_changes(target.inject(where, [get_operator("se")], False, "python").changes)
    text = models.read_text()
    assert text.count('== "avgpool"') == 2  # its own in create_modules, ours in forward only
    write_changes(target.revert(where, None, False).changes)
    assert models.read_text() == own


def test_cli_diff_and_check_write_nothing_and_check_exits_1_until_injected(standin):
    pristine = snapshot(standin)
    diff = run_cli("inject", str(standin), "--op", "se", "--diff")
    assert diff.returncode == 0 and '+            elif module_def["type"] == "scale_channels":' in diff.stdout
    assert run_cli("inject", str(standin), "--op", "se", "--check").returncode == 1
    assert snapshot(standin) == pristine
    assert run_cli("inject", str(standin), "--op", "se").returncode == 0
    assert run_cli("inject", str(standin), "--op", "se", "--check").returncode == 0
    assert run_cli("inject", str(standin), "--revert").returncode == 0
    assert snapshot(standin) == pristine


def test_check_repo_builds_with_its_darknet_and_refuses_a_silent_identity(standin, tmp_path):
    cfg = tmp_path / "se.cfg"
    cfg.write_text(_apply(TINY4, "8", "se", insert=True))
    env = {"PYTHONPATH": str(STUBS)}
    before = run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", env=env)
    assert before.returncode == 1 and "[avgpool], [scale_channels]" in before.stderr
    assert "silent identity" in before.stderr
    assert run_cli("inject", str(standin), "--op", "se").returncode == 0
    after = run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", "--json", env=env)
    assert after.returncode == 0, after.stderr
    assert (
        f"{check_cfg(cfg.read_text(), 'se.cfg', 64, 1).params} parameters"
        in run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", env=env).stdout
    )


def _work(tmp_path: Path, source: str) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(USER_MODULES / source.split(":")[0], work)
    (work / "m.cfg").write_text(TINY4)
    added = run_cli("ops", "add", source, cwd=work)
    assert added.returncode == 0, added.stderr
    return work


@pytest.mark.parametrize(
    ("source", "layer", "insert"),
    [
        pytest.param("attention.py:EMA", "8", True, id="keep-rule-inserted"),
        pytest.param("convs.py:SPDConv", "1", False, id="conv-rule-stride-2-replaces-a-stride-2-conv"),
    ],
)
def test_your_own_module_in_a_cfg_checks_as_the_codebases_darknet_builds_it(
    standin, tmp_path, source, layer, insert
):
    """`ops add` a module, `apply` it to a cfg (its section carries the learned arguments and its stride),
    `check` builds it with the built-in builder in the child that imports your file; after `inject`, the
    codebase's own Darknet gives the same per-layer parameters, strides and GFLOPs."""
    work, name = _work(tmp_path, source), source.split(":")[1]
    insert_flag = ["--insert"] if insert else []
    applied = run_cli(
        "apply", "m.cfg", "--layers", layer, "--op", name, "-o", "out.cfg", *insert_flag, cwd=work
    )
    assert applied.returncode == 0, applied.stderr
    ours = run_cli("check", "out.cfg", "--img", "128", "--json", cwd=work)
    assert ours.returncode == 0, ours.stderr
    assert run_cli("inject", str(standin), "--op", name, cwd=work).returncode == 0
    env = {"PYTHONPATH": str(STUBS)}
    theirs = run_cli("check", "out.cfg", "--repo", str(standin), "--img", "128", "--json", cwd=work, env=env)
    assert theirs.returncode == 0, theirs.stderr
    mine, own = json.loads(ours.stdout)["model"], json.loads(theirs.stdout)["model"]
    assert name.lower() in {layer["module"] for layer in own["layers"]}
    assert [layer["params"] for layer in mine["layers"]] == [layer["params"] for layer in own["layers"]]
    assert (mine["params"], mine["strides"], round(mine["gflops"], 2)) == (
        own["params"],
        own["strides"],
        round(own["gflops"], 2),
    )


@pytest.mark.parametrize(
    ("layer", "insert", "message"),
    [
        pytest.param(
            "4", False, "SPDConv always has stride 2, and this layer has stride 1", id="replace-stride-1"
        ),
        pytest.param(
            "4", True, "SPDConv has stride 2: inserted, it would change every later layer's size", id="insert"
        ),
    ],
)
def test_your_own_strided_module_goes_only_where_a_layer_has_its_stride(tmp_path, layer, insert, message):
    work = _work(tmp_path, "convs.py:SPDConv")
    insert_flag = ["--insert"] if insert else []
    result = run_cli("apply", "m.cfg", "--layers", layer, "--op", "SPDConv", *insert_flag, cwd=work)
    assert result.returncode == 1 and message in result.stderr
    assert sorted(p.name for p in work.iterdir() if p.suffix == ".cfg") == ["m.cfg"]


@pytest.mark.real
def test_the_real_package_builds_native_se_and_sam_as_darknet_computes_them(pytorchyolo_packages, tmp_path):
    """Injected, pytorchyolo's own Darknet pools [avgpool] to 1x1 and multiplies at [scale_channels] and
    [sam]: each layer's output shape, parameters and the GFLOPs equal the built-in builder's."""
    release = Path(
        shutil.copytree(pytorchyolo_packages["1.8.0"] / "pytorchyolo", tmp_path / "site" / "pytorchyolo")
    )
    pristine = snapshot(release)
    assert run_cli("inject", str(release), "--op", "se,cbam,sam").returncode == 0
    text = _apply(_apply(TINY4, "8", "se", insert=True), "20", "cbam", insert=True)
    text = _apply(text, "2", "sam", insert=True)
    cfg = tmp_path / "m.cfg"
    cfg.write_text(text)
    result = run_cli(
        "check", str(cfg), "--repo", str(release), "--img", "64", "--json", env={"PYTHONPATH": str(STUBS)}
    )
    assert result.returncode == 0, result.stderr
    import json

    theirs = json.loads(result.stdout)["model"]
    ours = check_cfg(text, "m.cfg", 64, 1)
    called = [layer for layer in theirs["layers"] if layer["output"]]
    assert {layer["module"] for layer in called} >= {"avgpool", "cbam"}
    assert {layer["module"] for layer in theirs["layers"]} >= {"scale_channels", "sam"}  # computed in forward
    assert all(layer["output"] == ours.layers[layer["index"]].output for layer in called)
    assert [layer["params"] for layer in theirs["layers"]] == [layer.params for layer in ours.layers]
    assert (theirs["params"], round(theirs["gflops"], 2), theirs["strides"]) == (
        ours.params,
        round(ours.gflops, 2),
        ours.strides,
    )
    assert run_cli("inject", str(release), "--revert").returncode == 0
    assert snapshot(release) == pristine


def test_installed_means_the_installed_pytorchyolo_for_a_cfg(pytorchyolo_packages, tmp_path):
    """`inject --installed --for MODEL.cfg` patches the pytorchyolo the Python imports (site-packages here:
    a folder on PYTHONPATH), not ultralytics; --revert restores every byte."""
    site = tmp_path / "site"
    release = Path(shutil.copytree(pytorchyolo_packages["1.8.0"] / "pytorchyolo", site / "pytorchyolo"))
    pristine = snapshot(release)
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.cfg").write_text(_apply(TINY4, "8", "se", insert=True))
    env = {"PYTHONPATH": str(site)}
    result = run_cli("inject", "--installed", "--for", "m.cfg", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{release}: ")
    create, forward = _registered(release)
    assert {"avgpool", "scale_channels"} <= create & forward
    result = run_cli("inject", "--installed", "--for", "m.cfg", "--revert", cwd=work, env=env)
    assert result.returncode == 0, result.stderr
    assert snapshot(release) == pristine
