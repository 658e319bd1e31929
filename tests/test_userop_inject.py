"""inject with the user's own module: the file goes in as a module of its own, an adapter subclass is what
the yaml names, registered like the built-ins (and in the repeat collection for a csp block); a copy edited
by hand or a foreign file never overwritten, another family's imports refused. Our own stand-in checkouts and
packages; the real releases are in test_userop_real.py; idempotence and exact reverts with your own modules,
for every family: targets/test_contract.py."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import (
    copy_checkout,
    inject_into,
    make_package,
    revert_from,
    snapshot,
    tasks_text,
    user_csp,
    user_operator,
    user_se,
)
from user_module_cases import USER_MODULES

from yolopatch.errors import YolopatchError
from yolopatch.files import write_changes
from yolopatch.targets.ultralytics import edits as ultralytics
from yolopatch.targets.ultralytics.package import read_package
from yolopatch.targets.ultralytics.revert import revert as ultralytics_revert
from yolopatch.userop.learn import Rule


def _collections(path: Path) -> list[set[str]]:
    """The names of every set, tuple and list literal of plain names in a file (parse_model's collections)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [n for n in ast.walk(tree) if isinstance(n, (ast.Set, ast.Tuple, ast.List))]
    return [{e.id for e in n.elts if isinstance(e, ast.Name)} for n in found if n.elts]


def _registered(path: Path) -> tuple[set[str], set[str]]:
    """(the (c1, c2) collection, the repeat collection)."""
    collections = _collections(path)
    base = next(c for c in collections if "Conv" in c)
    repeat = next(c for c in collections if "Conv" not in c and {"C3", "C2f"} & c)
    return base, repeat


def test_yolov5_gets_the_file_as_its_own_module_and_an_adapter_registered_like_a_builtin(checkout, tmp_path):
    root = checkout("master")
    write_changes(inject_into(root, [user_se(tmp_path), user_csp(tmp_path)]).changes)
    models = root / "models"
    copy = (models / "yolopatch_se_attention.py").read_text(encoding="utf-8")
    assert copy.startswith("# yolopatch ") and copy.endswith(
        (USER_MODULES / "se_attention.py").read_text(encoding="utf-8")
    )
    common = (models / "common.py").read_text()
    assert "from .yolopatch_se_attention import SEAttention as _SEAttentionBase" in common
    assert "class SEAttention(_SEAttentionBase):" in common and "class C2fLite(_C2fLiteBase):" in common
    base, repeat = _registered(models / "yolo.py")
    assert {"SEAttention", "C2fLite"} <= base and "C2fLite" in repeat and "SEAttention" not in repeat


def test_an_edited_copy_is_neither_overwritten_nor_deleted_without_force(checkout, tmp_path):
    root = checkout("master")
    write_changes(inject_into(root, [user_se(tmp_path)]).changes)
    copy = root / "models" / "yolopatch_se_attention.py"
    copy.write_text(copy.read_text() + "# my fix\n")
    with pytest.raises(YolopatchError, match="you edited yolopatch's copy"):
        revert_from(root)
    (tmp_path / "mine" / "se_attention.py").write_text(
        (tmp_path / "mine" / "se_attention.py").read_text() + "\n"
    )
    with pytest.raises(YolopatchError, match="you edited yolopatch's copy"):
        inject_into(root, [user_se(tmp_path)])
    assert revert_from(root, force=True).changed


def test_a_foreign_file_of_that_name_is_refused(checkout, tmp_path):
    root = checkout("master")
    (root / "models" / "yolopatch_se_attention.py").write_text("# mine\n")
    with pytest.raises(YolopatchError, match="is not a file yolopatch wrote"):
        inject_into(root, [user_se(tmp_path)])


def test_a_changed_user_file_is_an_update(checkout, tmp_path):
    root, se = checkout("master"), user_se(tmp_path)
    write_changes(inject_into(root, [se]).changes)
    source = tmp_path / "mine" / "se_attention.py"
    source.write_text(source.read_text() + "\n# tuned\n")
    plan = inject_into(root, [se])
    assert (
        "yolopatch_se_attention.py: updated, a copy of se_attention.py (the class SEAttention)"
        in plan.actions
    )
    (change,) = [c for c in plan.changes if c.changed]
    assert change.new.endswith("# tuned\n")


def test_another_familys_imports_are_refused_naming_the_import(checkout, tmp_path):
    root = checkout("master")
    op = user_operator(
        tmp_path, "ultra_import.py", "ConvGate", Rule("conv"), {"c1": "c1", "c2": "c2", "k": "-"}, {"k": 3}
    )
    with pytest.raises(
        YolopatchError, match=r"ultra_import.py:\d+: imports Conv from ultralytics.nn.modules.conv"
    ):
        inject_into(root, [op])
    assert not (root / "models" / "yolopatch_ultra_import.py").exists()


def test_the_pip_package_layout_points_yolov5_imports_at_its_own_package(tmp_path):
    package = copy_checkout("master", tmp_path / "site" / "yolov5")
    yolo = package / "models" / "yolo.py"
    yolo.write_text(yolo.read_text().replace("from models.common import", "from yolov5.models.common import"))
    op = user_operator(
        tmp_path, "v5_import.py", "ConvGateV5", Rule("conv"), {"c1": "c1", "c2": "c2", "k": "-"}, {"k": 3}
    )
    write_changes(inject_into(package, [op]).changes)
    copy = (package / "models" / "yolopatch_v5_import.py").read_text()
    assert "from yolov5.models.common import Conv" in copy and "from models.common" not in copy


@pytest.mark.parametrize("shape", ["tuple", "set", "frozenset"])
def test_ultralytics_gets_the_copy_beside_our_module_file_and_the_repeat_registration(tmp_path, shape):
    package = make_package(tmp_path, tasks_text(shape))
    before = snapshot(package.root)
    plan = ultralytics.plan_inject(package, read_package(package), [user_se(tmp_path), user_csp(tmp_path)])
    write_changes(plan.changes)
    modules = package.root / "nn" / "modules"
    assert (modules / "yolopatch_csp.py").is_file() and (modules / "yolopatch_se_attention.py").is_file()
    assert "from .yolopatch_csp import C2fLite as _C2fLiteBase" in (modules / "yolopatch.py").read_text()
    base, repeat = _registered(package.tasks)
    assert {"SEAttention", "C2fLite"} <= base and "C2fLite" in repeat and "SEAttention" not in repeat
    assert not ultralytics.inject(package, [user_se(tmp_path), user_csp(tmp_path)]).changed
    write_changes(ultralytics_revert(package).changes)
    assert snapshot(package.root) == before
