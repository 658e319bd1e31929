"""`inject` into WongKinYiu's PyTorch_YOLOv4 layout and `check MODEL.cfg --repo` with its own Darknet class, on
our stand-in checkout in its shape (tests/fixtures/darknet/pytorch_yolov4; the real code is GPL and never
committed): create_modules' `mdef['type']` dispatch, forward_once's class-name dispatch, parse_model_cfg's
`supported` keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import FIXTURES, STUBS, run_cli, snapshot

from yolopatch.darknet.measure import check_cfg
from yolopatch.files import write_changes
from yolopatch.formats.base import FormatRequest
from yolopatch.formats.registry import format_for
from yolopatch.operators.registry import get_operator
from yolopatch.targets.pytorch_yolov4.edits import registered_types
from yolopatch.targets.pytorch_yolov4.package import read_checkout
from yolopatch.targets.registry import locate

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
OPS = ("se", "sam", "involution", "cbam")


@pytest.fixture
def standin(tmp_path) -> Path:
    return Path(shutil.copytree(FIXTURES / "darknet" / "pytorch_yolov4", tmp_path / "repo"))


def _apply(text: str, layer: str, name: str) -> str:
    op = get_operator(name)
    fmt = format_for(Path("m.cfg"))
    assert fmt is not None
    values = {o.name: o.default for o in op.options}
    return fmt.apply(text, layer, FormatRequest(op, values, True), "m.cfg").text


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_inject_registers_types_and_keys_once_and_reverts_byte_for_byte(standin, newline):
    for path in standin.rglob("*.py"):
        path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    pristine = snapshot(standin)
    target, where = locate(standin / "models")
    assert target.name == "PyTorch_YOLOv4"
    ops = [get_operator(name) for name in OPS]
    write_changes(target.inject(where, ops, False, "python").changes)
    types, keys = registered_types(where, read_checkout(where))
    assert {"avgpool", "scale_channels", "sam", "involution", "cbam"} <= types
    assert {"reduction", "group_channels"} <= keys
    text = where.models.read_bytes().decode()
    assert text.count("== 'avgpool'") == 1 and text.count("== 'sam'") == 1  # its own branches, left alone
    assert text.count("# yolopatch: Involution") == 1 and ("\r\n" in text) == (newline == "\r\n")
    assert not target.inject(where, ops, False, "python").changed
    write_changes(target.revert(where, ["CBAM"], False).changes)
    assert "cbam" not in registered_types(where, read_checkout(where))[0]
    write_changes(target.revert(where, None, False).changes)
    assert snapshot(standin) == pristine


def refused_then_built(standin: Path, cfg: Path, ops: str) -> None:
    """`check CFG --repo` refuses the cfg naming its sections' types and `inject --op OPS` (sorted, comma-
    separated); after that inject it builds with the checkout's own Darknet, with the builder's parameters."""
    env = {"PYTHONPATH": str(STUBS)}
    before = run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", env=env)
    assert before.returncode == 1 and f"[{'], ['.join(ops.split(','))}]" in before.stderr
    assert f"yolopatch inject {standin.resolve()} --op {ops}" in before.stderr
    assert run_cli("inject", str(standin), "--op", ops).returncode == 0
    after = run_cli("check", str(cfg), "--repo", str(standin), "--img", "64", env=env)
    assert after.returncode == 0, after.stderr
    assert f"{check_cfg(cfg.read_text(), cfg.name, 64, 1).params} parameters" in after.stdout


def test_check_repo_builds_with_its_darknet_and_refuses_a_missing_registration(standin, tmp_path):
    cfg = tmp_path / "inv.cfg"
    cfg.write_text(_apply(TINY4, "8", "involution"))
    refused_then_built(standin, cfg, "involution")
