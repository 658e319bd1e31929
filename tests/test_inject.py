"""inject on YOLOv5: its layouts and collection styles (real wheels and our own fixtures), a class of the same
name, a partial, older or edited injection, bad checkouts, all-or-nothing writes. What every family does
(idempotence, exact reverts, checkpoints, its own Model's build) is in targets/test_contract.py."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import pytest
from helpers import EXAMPLE, inject_into, run_cli, snapshot

from yolopatch import __version__, files
from yolopatch.errors import YolopatchError
from yolopatch.inject import block_digest
from yolopatch.operators.registry import DEFAULT


def _copy_package(source: Path, tmp_path: Path) -> Path:
    """A copy of a wheel's `yolov5` package folder (the name matters: yolo.py imports yolov5.models)."""
    target = tmp_path / "site" / "yolov5"
    shutil.copytree(source, target)
    return target


def _collection_names(yolo: Path) -> list[list[str]]:
    tree = ast.parse(yolo.read_text(encoding="utf-8"))
    return [
        [getattr(e, "id", "") for e in n.comparators[0].elts]
        for n in ast.walk(tree)
        if isinstance(n, ast.Compare)
        and isinstance(n.left, ast.Name)
        and n.left.id == "m"
        and isinstance(n.comparators[0], (ast.List, ast.Tuple, ast.Set))
    ]


REAL = [
    pytest.param("4.0.14", "list (one name per line)", id="v4-list-one-per-line"),
    pytest.param("5.0.0", "list", id="v5-list"),
    pytest.param("6.1.8", "tuple", id="v6.1-tuple"),
    pytest.param("7.0.14", "set", id="v7-set"),
]


@pytest.mark.parametrize(("version", "collection"), REAL)
def test_real_wheel_inject_idempotent_check_diff_revert(yolov5_packages, tmp_path, version, collection):
    package = _copy_package(yolov5_packages[version], tmp_path)
    pristine = snapshot(package)

    assert run_cli("inject", str(package), "--check").returncode == 1
    diff = run_cli("inject", str(package), "--diff")
    assert diff.returncode == 0 and "+class Involution(nn.Module):" in diff.stdout
    assert snapshot(package) == pristine

    first = run_cli("inject", str(package))
    assert first.returncode == 0, first.stderr
    assert f"parse_model's collection is {collection}" in first.stdout
    assert "yolov5 pip package layout" in first.stdout
    injected = snapshot(package)
    names = _collection_names(package / "models" / "yolo.py")
    assert "Involution" in names[0] and all("Involution" not in other for other in names[1:])
    assert all(injected[name] == pristine[name] for name in pristine if name.endswith("tf.py"))

    second = run_cli("inject", str(package))
    assert second.returncode == 0 and "already injected" in second.stderr
    assert snapshot(package) == injected
    assert run_cli("inject", str(package), "--check").returncode == 0
    assert run_cli("inject", str(package / "models"), "--check").returncode == 0  # REPO may be models/

    assert run_cli("inject", str(package), "--revert").returncode == 0
    assert snapshot(package) == pristine


@pytest.mark.parametrize(
    ("fixture", "import_line", "collection_text", "repeat_collection"),
    [
        pytest.param(
            "v3",
            "from models.common import Conv, Bottleneck, SPP, DWConv, Focus, BottleneckCSP, Concat, Involution\n",
            "[nn.Conv2d, Conv, Bottleneck, SPP, DWConv, MixConv2d, Focus, CrossConv, BottleneckCSP, Involution]",
            "if m in [BottleneckCSP]:",
            id="v3-one-line-import-list",
        ),
        pytest.param(
            "master",
            "    Detect,\n    Involution,\n)\n",
            "{\n            Conv,\n            C3,\n            Involution,\n        }",
            "            if m in {\n                C3,\n            }:",
            id="master-parenthesised-import-one-per-line-set",
        ),
    ],
)
def test_layouts_pypi_does_not_ship(checkout, fixture, import_line, collection_text, repeat_collection):
    repo = checkout(fixture)
    pristine = snapshot(repo)
    assert run_cli("inject", str(repo)).returncode == 0
    yolo = (repo / "models" / "yolo.py").read_text(encoding="utf-8")
    assert import_line in yolo and collection_text in yolo
    assert repeat_collection in yolo  # the C3 "insert n" collection never gets an operator
    common = (repo / "models" / "common.py").read_text(encoding="utf-8")
    assert common.count("class Involution(nn.Module):") == 1
    assert ("import torch.nn as nn\n\n\nclass InvolutionAggregate" in common) == (fixture == "master")
    compile(common, "common.py", "exec")
    assert run_cli("inject", str(repo), "--revert").returncode == 0
    assert snapshot(repo) == pristine


FOREIGN = '''

class Involution(nn.Module):
    """pasted from a blog post"""

    def __init__(self, channels, kernel_size, stride):
        super().__init__()
'''


def test_foreign_class_is_refused_then_replaced_with_force_and_restored_by_revert(checkout):
    repo = checkout("v3")
    common = repo / "models" / "common.py"
    common.write_text(common.read_text() + FOREIGN)
    pristine = snapshot(repo)
    refused = run_cli("inject", str(repo))
    assert refused.returncode == 1 and "already defines its own `class Involution`" in refused.stderr
    assert "--force" in refused.stderr and snapshot(repo) == pristine
    assert run_cli("inject", str(repo), "--force").returncode == 0
    text = common.read_text()
    assert "# yolopatch --force disabled: class Involution(nn.Module):" in text
    assert run_cli("inject", str(repo)).returncode == 0  # idempotent after --force too
    assert run_cli("inject", str(repo), "--revert").returncode == 0
    assert snapshot(repo) == pristine


def test_partial_injection_is_completed(checkout):
    repo = checkout("v3")
    pristine = snapshot(repo)
    run_cli("inject", str(repo))
    full = snapshot(repo)
    yolo = repo / "models" / "yolo.py"
    yolo.write_text(yolo.read_text().replace(", BottleneckCSP, Involution]", ", BottleneckCSP]"))
    assert run_cli("inject", str(repo), "--check").returncode == 1
    assert run_cli("inject", str(repo)).returncode == 0
    assert snapshot(repo) == full
    run_cli("inject", str(repo), "--revert")
    assert snapshot(repo) == pristine


def _rewrite_block(common: Path, version: str, body_change: tuple[str, str], digest: bool = True) -> None:
    """Make the injected block look as another yolopatch would have written it (a checksum of its own body,
    or none, as 0.1.0 wrote), or as a user left it after editing (digest=True with the old checksum)."""
    text = common.read_text()
    header = next(line for line in text.splitlines() if line.startswith("# >>> yolopatch"))
    body_start = text.index(header) + len(header) + 1
    body_end = text.index("# <<< yolopatch")
    body = text[body_start:body_end].replace(*body_change)
    marker = header.replace(f"yolopatch {__version__}:", f"yolopatch {version}:")
    old_digest = marker.split("; sha256 ")[1][:12]
    marker = marker.replace(f"; sha256 {old_digest}", f"; sha256 {block_digest(body)}" if digest else "")
    common.write_text(text[: text.index(header)] + marker + "\n" + body + text[body_end:])


def test_an_older_injection_is_updated(checkout):
    repo = checkout("master")
    pristine = snapshot(repo)
    run_cli("inject", str(repo))
    current = snapshot(repo)
    common = repo / "models" / "common.py"
    _rewrite_block(common, "0.0.9", ("        return self.proj(y)\n", "        return y\n"))
    result = run_cli("inject", str(repo))
    assert result.returncode == 0 and f"from yolopatch 0.0.9 to {__version__}" in result.stdout
    assert snapshot(repo) == current
    run_cli("inject", str(repo), "--revert")
    assert snapshot(repo) == pristine


EDITED = ("        return self.proj(y)\n", "        return self.proj(y) * 2  # my experiment\n")


def test_an_edited_block_is_never_overwritten_or_reverted_without_force(checkout):
    repo = checkout("master")
    pristine = snapshot(repo)
    run_cli("inject", str(repo))
    injected = snapshot(repo)
    common = repo / "models" / "common.py"
    text = common.read_text()
    common.write_text(text.replace(*EDITED))
    edited = snapshot(repo)
    for args in (["inject", str(repo)], ["inject", str(repo), "--revert"]):
        result = run_cli(*args)
        assert result.returncode == 1 and "was edited since yolopatch" in result.stderr, result.stderr
        assert "--force" in result.stderr and len(result.stderr.strip().splitlines()) <= 2
        assert snapshot(repo) == edited
    assert run_cli("inject", str(repo), "--force").returncode == 0
    assert snapshot(repo) == injected
    common.write_text(text.replace(*EDITED))
    assert run_cli("inject", str(repo), "--revert", "--force").returncode == 0
    assert snapshot(repo) == pristine


LEGACY = [
    pytest.param(("", ""), 0, "updated class Involution from yolopatch 0.1.0", id="same-body-updated"),
    pytest.param(EDITED, 1, "recorded no checksum", id="different-body-refused"),
]


@pytest.mark.parametrize(("change", "code", "message"), LEGACY)
def test_a_block_without_checksum_is_updated_only_when_nothing_can_be_lost(checkout, change, code, message):
    repo = checkout("v3")
    run_cli("inject", str(repo))
    _rewrite_block(repo / "models" / "common.py", "0.1.0", change, digest=False)
    before = snapshot(repo)
    result = run_cli("inject", str(repo))
    assert result.returncode == code and message in result.stdout + result.stderr
    if code:
        assert snapshot(repo) == before
        assert run_cli("inject", str(repo), "--force").returncode == 0


def test_apply_points_at_the_checkout_the_yaml_sits_in(checkout):
    repo = checkout("v3")
    (repo / "models" / "yolov5s.yaml").write_text(EXAMPLE, encoding="utf-8")
    before = run_cli("apply", "models/yolov5s.yaml", "-l", "8", cwd=repo)
    assert "Next: yolopatch inject . --for models/yolov5s-involution.yaml   (once" in before.stdout
    assert "yolopatch check models/yolov5s-involution.yaml --repo .\n" in before.stdout
    assert run_cli("inject", ".", "--for", "models/yolov5s-involution.yaml", cwd=repo).returncode == 0
    again = run_cli("inject", ".", "--for", "models/yolov5s-involution.yaml", "--check", cwd=repo)
    assert again.returncode == 0


def _break(repo: Path, name: str, old: str, new: str) -> None:
    path = repo / "models" / name
    path.write_text(path.read_text().replace(old, new))


BAD = [
    pytest.param(lambda r: shutil.rmtree(r / "models"), "not a checkout yolopatch knows", id="not-yolov5"),
    pytest.param(
        lambda r: (r / "models" / "yolo.py").unlink(), "not a checkout yolopatch knows", id="no-yolo-py"
    ),
    pytest.param(
        lambda r: _break(r, "yolo.py", "if m in [nn.Conv2d, Conv,", "if m in [nn.Conv2d,"),
        "parse_model has no `if m in {Conv, ...}:` collection",
        id="no-collection",
    ),
    pytest.param(
        lambda r: _break(r, "yolo.py", "def parse_model", "def build"),
        "has no parse_model",
        id="no-parse-model",
    ),
    pytest.param(
        lambda r: _break(r, "common.py", "class Concat", "class Concat("),
        "does not parse as Python",
        id="common-syntax-error",
    ),
    pytest.param(
        lambda r: _break(r, "common.py", "class Conv(", "class Conv2("), "defines no Conv", id="no-conv"
    ),
]


@pytest.mark.parametrize(("damage", "message"), BAD)
def test_bad_checkouts_exit_1_and_change_nothing(checkout, damage, message):
    repo = checkout("v3")
    damage(repo)
    before = snapshot(repo)
    result = run_cli("inject", str(repo))
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert snapshot(repo) == before


def test_missing_folder():
    result = run_cli("inject", "/nonexistent/yolov5")
    assert result.returncode == 1 and "no such folder" in result.stderr


def test_second_write_failing_restores_the_first(checkout, monkeypatch):
    repo = checkout("v3")
    before = snapshot(repo)
    plan = inject_into(repo, [DEFAULT])
    real_replace, calls = files.os.replace, []

    def flaky_replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky_replace)
    with pytest.raises(YolopatchError, match="No space left on device"):
        files.write_changes(plan.changes)
    assert snapshot(repo) == before
    assert not list((repo / "models").glob(".*.yolopatch"))


def test_failing_stage_writes_nothing(checkout, monkeypatch):
    repo = checkout("v3")
    before = snapshot(repo)
    plan = inject_into(repo, [DEFAULT])
    real_mkstemp = files.tempfile.mkstemp

    def refuse_yolo(*args, **kwargs):
        if kwargs.get("prefix", "").startswith(".yolo.py"):
            raise PermissionError(13, "Permission denied")
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(files.tempfile, "mkstemp", refuse_yolo)
    with pytest.raises(YolopatchError, match="cannot write it"):
        files.write_changes(plan.changes)
    assert snapshot(repo) == before


def test_examples_readme_round_trip_through_cli(tmp_path):
    example = tmp_path / "yolov5s.yaml"
    example.write_text(EXAMPLE, encoding="utf-8")
    assert run_cli("apply", str(example), "--layers", "8").returncode == 0
    assert (tmp_path / "yolov5s-involution.yaml").exists()
