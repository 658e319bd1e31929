"""`inject` into the ultralytics/yolov3 archive layout (a root models.py: the layout PyTorch_YOLOv4's older
checkouts kept, handled by the PyTorch_YOLOv4 target) and `check MODEL.cfg --repo` with its own Darknet
class, on our stand-in in its shape (tests/fixtures/darknet/yolov3_archive; the real code is GPL and never
committed): create_modules(module_defs, img_size)'s `mdef['type']` dispatch without [avgpool],
[scale_channels] or [sam] and with no activation=logistic, so native SE and SAM are refused there;
parse_model_cfg's `supported` keys (no group_id: our own archive3.cfg, not tiny4.cfg)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, STUBS, run_cli, snapshot
from test_darknet_inject import _apply
from test_darknet_pytorch_yolov4 import refused_then_built

from yolopatch.errors import YolopatchError
from yolopatch.files import write_changes
from yolopatch.operators.registry import get_operator
from yolopatch.targets.pytorch_yolov4.edits import registered_types
from yolopatch.targets.pytorch_yolov4.package import read_checkout
from yolopatch.targets.registry import locate

ARCHIVE3 = (FIXTURES / "darknet" / "archive3.cfg").read_bytes().decode()
TINY4 = FIXTURES / "darknet" / "tiny4.cfg"


@pytest.fixture
def standin(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "darknet" / "yolov3_archive", tmp_path / "yolov3"))


def test_locate_takes_it_as_the_root_models_py_layout_of_pytorch_yolov4(standin):
    target, where = locate(standin)
    assert (target.name, where.models, where.module) == ("PyTorch_YOLOv4", standin / "models.py", "models")
    assert "ultralytics/yolov3 archive" in where.kind


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_inject_registers_types_and_keys_once_and_reverts_byte_for_byte(standin, newline):
    for path in standin.rglob("*.py"):
        path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    pristine = snapshot(standin)
    target, where = locate(standin)
    ops = [get_operator("involution"), get_operator("cbam")]
    write_changes(target.inject(where, ops, False, "python").changes)
    types, keys = registered_types(where, read_checkout(where))
    assert {"involution", "cbam"} <= types and not {"avgpool", "scale_channels", "sam"} & types
    assert {"reduction", "group_channels"} <= keys
    text = where.models.read_bytes().decode()
    assert "elif mdef['type'] == 'involution':  # yolopatch: Involution" in text  # its quoting
    assert text.index("# yolopatch: CBAM") < text.index("print('Warning: Unrecognized Layer Type")
    config = where.parse_config.read_bytes().decode()
    assert "supported += ['reduction']  # yolopatch: CBAM" in config
    assert ("\r\n" in text) == ("\r\n" in config) == (newline == "\r\n")
    assert not target.inject(where, ops, False, "python").changed
    write_changes(target.revert(where, ["CBAM"], False).changes)
    assert "cbam" not in registered_types(where, read_checkout(where))[0]
    write_changes(target.revert(where, None, False).changes)
    assert snapshot(standin) == pristine


@pytest.mark.parametrize("name", ["se", "sam"])
def test_native_forms_are_refused_in_one_line_saying_why(standin, name):
    pristine = snapshot(standin)
    target, where = locate(standin)
    with pytest.raises(YolopatchError) as error:
        target.inject(where, [get_operator("cbam"), get_operator(name)], False, "python")
    message = str(error.value)
    assert "\n" not in message and "drops activation=logistic" in message and "nothing was changed" in message
    assert "such as cbam" in message and "models/models.py or pytorchyolo" in message
    result = run_cli("inject", str(standin), "--op", name)
    assert result.returncode == 1 and "activation=logistic" in result.stderr
    assert snapshot(standin) == pristine


def test_check_repo_builds_with_its_darknet_and_refuses_what_it_cannot_build(standin, tmp_path):
    cfg = tmp_path / "inv.cfg"
    cfg.write_text(_apply(_apply(ARCHIVE3, "9", "involution", False), "4", "cbam", True))
    refused_then_built(standin, cfg, "cbam,involution")
    env = {"PYTHONPATH": str(STUBS)}
    config = standin / "utils" / "parse_config.py"
    kept = [line for line in config.read_text().splitlines() if not line.endswith("# yolopatch: Involution")]
    config.write_text("\n".join(kept) + "\n")  # an operator's keys not in `supported`: the inject step
    keys = run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", env=env)
    assert keys.returncode == 1 and "[involution] in utils/parse_config.py's `supported`" in keys.stderr
    assert "--op involution" in keys.stderr
    se = tmp_path / "se.cfg"
    se.write_text(_apply(ARCHIVE3, "4", "se", True))
    native = run_cli("check", str(se), "--repo", str(standin), "--img", "64", env=env)
    assert native.returncode == 1 and "drops activation=logistic" in native.stderr
    grouped = run_cli("check", str(TINY4), "--repo", str(standin), "--img", "64", env=env)
    assert grouped.returncode == 1 and "does not accept group_id ([route])" in grouped.stderr
