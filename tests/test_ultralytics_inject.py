"""inject on ultralytics: a module file of our own, its registration in every shape ultralytics has written
it, exact reverts after any sequence of injects and reverts, upgrades, refusals, the command line. Packages
here are yolopatch's own stand-ins in ultralytics' shape (helpers.make_package; the real releases are in
test_ultralytics_real.py). What every family does is in targets/test_contract.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    ULTRALYTICS_BODIES,
    ULTRALYTICS_IMPORTS,
    ULTRALYTICS_INIT,
    ULTRALYTICS_SIBLINGS,
    changed_lines,
    fixture_text,
    make_package,
    run_cli,
    snapshot,
    tasks_text,
    write_checkpoint,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from yolopatch import __version__
from yolopatch.errors import YolopatchError
from yolopatch.files import write_changes
from yolopatch.operators.registry import OPERATORS, get_operator
from yolopatch.targets.ultralytics.edits import plan_inject
from yolopatch.targets.ultralytics.package import HEADER, Package, read_package
from yolopatch.targets.ultralytics.revert import plan_revert

SE, CBAM, INV = get_operator("se"), get_operator("cbam"), get_operator("involution")


def texts_of(package: Package) -> dict[Path, str | None]:
    return read_package(package)


def new_text(plan, path: Path) -> str | None:
    return next(change.new for change in plan.changes if change.path == path)


COLLECTIONS = [
    pytest.param(
        "tuple", ["+            SE,"], "a tuple literal (one name per line)", id="tuple-one-per-line"
    ),
    pytest.param("set", ["+            SE,"], "a set literal (one name per line)", id="set-one-per-line"),
    pytest.param(
        "one-line",
        ["-        if m in {Conv, C2f}:", "+        if m in {Conv, C2f, SE}:"],
        "a set literal",
        id="one-line-set",
    ),
    pytest.param(
        "frozenset",
        ["+            SE,"],
        "a local frozenset `base_modules` of a set literal (one name per line)",
        id="local-frozenset-base-modules",
    ),
]


@pytest.mark.parametrize(("shape", "expected", "kind"), COLLECTIONS)
def test_the_collection_gets_the_name_in_its_own_style(tmp_path, shape, expected, kind):
    package = make_package(tmp_path, tasks_text(shape))
    texts = texts_of(package)
    plan = plan_inject(package, texts, [SE])
    tasks = new_text(plan, package.tasks)
    assert changed_lines(texts[package.tasks], tasks) == ["+    SE,", *expected]  # type: ignore[arg-type]
    assert kind in plan.flavour and "ultralytics 8.9.0 (package folder)" in plan.flavour


def test_repeat_collection_is_never_touched(tmp_path):
    package = make_package(tmp_path, tasks_text("frozenset"))
    tasks = new_text(plan_inject(package, texts_of(package), [SE, INV]), package.tasks)
    assert "repeat_modules = frozenset({C2f})" in tasks  # type: ignore[operator]


def test_init_gets_one_import_and_the_all_entries(tmp_path):
    package = make_package(tmp_path)
    plan = plan_inject(package, texts_of(package), [SE, INV])
    assert changed_lines(ULTRALYTICS_INIT, new_text(plan, package.init)) == [  # type: ignore[arg-type]
        "+from .yolopatch import SE, Involution",
        '+    "SE",',
        '+    "Involution",',
    ]
    module = new_text(plan, package.module)
    assert module is not None and module.startswith(HEADER)
    assert "from .conv import Conv\n" in module and "class Involution(nn.Module):" in module


def test_a_list_all_with_single_quotes_keeps_them(tmp_path):
    init = ULTRALYTICS_INIT.replace(
        '__all__ = (\n    "Conv",\n    "CBAM",\n    "Concat",\n    "C2f",\n    "Detect",\n)',
        "__all__ = ['Conv', 'C2f']",
    )
    package = make_package(tmp_path, init=init)
    plan = plan_inject(package, texts_of(package), [SE])
    assert "__all__ = ['Conv', 'C2f', 'SE']" in new_text(plan, package.init)  # type: ignore[operator]
    assert "__all__ is a list" in plan.flavour


def test_ultralytics_own_cbam_is_never_shadowed(tmp_path):
    package = make_package(tmp_path)
    plan = plan_inject(package, texts_of(package), [CBAM])
    assert new_text(plan, package.init) == ULTRALYTICS_INIT  # not exported from nn.modules: its CBAM stays
    tasks = new_text(plan, package.tasks)
    assert changed_lines(tasks_text(), tasks) == [  # type: ignore[arg-type]
        "+from ultralytics.nn.modules.yolopatch import CBAM",
        "+            CBAM,",
    ]


def test_a_star_import_gets_no_name(tmp_path):
    star = ULTRALYTICS_IMPORTS.replace("(\n    C2f,\n    Concat,\n    Conv,\n    Detect,\n)", "*")
    package = make_package(tmp_path, tasks_text("set", star))
    plan = plan_inject(package, texts_of(package), [SE])
    assert changed_lines(tasks_text("set", star), new_text(plan, package.tasks)) == ["+            SE,"]  # type: ignore[arg-type]
    assert "a star import" in plan.flavour


@settings(max_examples=25, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.booleans(), st.sets(st.sampled_from(sorted(OPERATORS)), min_size=1)), max_size=5
    ),
    shape=st.sampled_from(sorted(ULTRALYTICS_BODIES)),
)
def test_any_sequence_of_injects_and_reverts_then_a_full_revert_restores_every_byte(
    tmp_path_factory, steps, shape
):
    root = tmp_path_factory.mktemp("pkg")
    package = make_package(root, tasks_text(shape))
    before = snapshot(root)
    for revert, names in steps:
        operators = [OPERATORS[n] for n in sorted(names)]
        texts = texts_of(package)
        plan = (
            plan_revert(package, texts, [o.name for o in operators])
            if revert
            else plan_inject(package, texts, operators)
        )
        write_changes(plan.changes)
    write_changes(plan_revert(package, texts_of(package)).changes)
    assert snapshot(root) == before


def test_an_older_block_is_updated(tmp_path):
    package = make_package(tmp_path)
    write_changes(plan_inject(package, texts_of(package), [SE]).changes)
    text = package.module.read_text()
    package.module.write_text(text.replace(f"yolopatch {__version__}: SE", "yolopatch 0.1.9: SE"))
    plan = plan_inject(package, texts_of(package), [SE])
    assert new_text(plan, package.module) == text


def test_an_edited_block_is_refused_unless_forced(tmp_path):
    package = make_package(tmp_path)
    write_changes(plan_inject(package, texts_of(package), [SE]).changes)
    package.module.write_text(package.module.read_text().replace("nn.ReLU(inplace=True)", "nn.SiLU()"))
    with pytest.raises(YolopatchError, match="was edited since"):
        plan_inject(package, texts_of(package), [SE])
    with pytest.raises(YolopatchError, match="reverting would delete those edits"):
        plan_revert(package, texts_of(package))
    assert plan_inject(package, texts_of(package), [SE], force=True).changed


def test_a_hand_made_registration_is_refused_unless_forced(tmp_path):
    siblings = tmp_path / "ultralytics" / "nn" / "modules"
    package = make_package(
        tmp_path, tasks_text("set", ULTRALYTICS_IMPORTS.replace("    Detect,\n", "    Detect,\n    SE,\n"))
    )
    (siblings / "block.py").write_text(ULTRALYTICS_SIBLINGS["block.py"] + "\n\nclass SE:\n    pass\n")
    with pytest.raises(
        YolopatchError, match=r"already imports its own SE \(class defined in nn/modules/block.py:5\)"
    ):
        plan_inject(package, texts_of(package), [SE])
    plan = plan_inject(package, texts_of(package), [SE], force=True)
    assert "from ultralytics.nn.modules.yolopatch import SE" in new_text(plan, package.tasks)  # type: ignore[operator]


def test_an_upgrade_that_replaced_the_files_is_reported_and_repaired(tmp_path):
    package = make_package(tmp_path)
    write_changes(plan_inject(package, texts_of(package), [SE]).changes)
    # what pip install -U does: new tasks.py and __init__.py, our file (not in its RECORD) left behind
    package.tasks.write_text(tasks_text())
    package.init.write_text(ULTRALYTICS_INIT)
    plan = plan_inject(package, texts_of(package), [INV])
    assert plan.warnings and "upgraded or reinstalled since yolopatch injected SE" in plan.warnings[0]
    assert "--op se" in plan.warnings[0]
    repaired = plan_inject(package, texts_of(package), [SE])
    assert {c.path for c in repaired.changes if c.changed} == {package.tasks, package.init}


def test_an_unknown_layout_fails_with_the_manual_edit_for_the_operator_asked_for(tmp_path):
    package = make_package(tmp_path, ULTRALYTICS_IMPORTS + "\n\ndef parse_model(d, ch):\n    return d\n")
    with pytest.raises(
        YolopatchError, match=r"no `if m in \{Conv, \.\.\.\}:` collection.*By hand: 1\)"
    ) as raised:
        plan_inject(package, texts_of(package), [INV])
    assert "(Involution)" in str(raised.value) and "SE" not in str(raised.value)


# --- the command line ------------------------------------------------------------------------------------


def test_cli_inject_check_revert_on_a_checkout(tmp_path):
    make_package(tmp_path)
    before = snapshot(tmp_path)
    assert run_cli("inject", str(tmp_path), "--op", "se", "--check").returncode == 1
    result = run_cli("inject", str(tmp_path), "--op", "se,cbam")
    assert result.returncode == 0, result.stderr
    assert "nn/modules/yolopatch.py: created, with class SE, CBAM" in result.stdout
    assert "not from this checkout" in result.stderr  # this Python imports another ultralytics
    assert run_cli("inject", str(tmp_path), "--op", "se", "--check").returncode == 0
    result = run_cli("inject", str(tmp_path), "--revert")
    assert result.returncode == 0 and "deleted (no operator left in it)" in result.stdout
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("git", "kind"), [(True, "checkout"), (False, "package folder")], ids=["git", "copy"]
)
def test_the_target_is_named_for_what_it_is_and_its_lines_come_in_order_on_one_stream(tmp_path, git, kind):
    make_package(tmp_path)
    if git:
        (tmp_path / ".git").mkdir()
    result = run_cli("inject", str(tmp_path), "--op", "se")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'ultralytics'}: ultralytics 8.9.0 ({kind}):")
    assert lines[1].strip().startswith("nn/modules/yolopatch.py: created")


def test_cli_inject_installed_patches_what_python_imports(tmp_path):
    site = tmp_path / "site"
    package = make_package(site)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("inject", "--installed", "--python", sys.executable, "--op", "se", env=env)
    assert result.returncode == 0, result.stderr
    assert f"{package.root}: ultralytics 8.9.0 (installed package)" in result.stdout
    assert package.module.is_file()
    result = run_cli("inject", "--installed", "--op", "se", "--check", env=env)
    assert result.returncode == 0 and "already injected" in result.stderr


def empty_environment(folder: Path) -> Path:
    """A fresh virtual environment's Python, with nothing installed."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    return folder / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def test_cli_installed_without_ultralytics_says_how_to_install(tmp_path):
    python = empty_environment(tmp_path / "env")
    result = run_cli("inject", "--installed", "--python", str(python), env={"PYTHONPATH": ""})
    assert result.returncode == 1
    assert (
        f"{python}: cannot import ultralytics. Install it there (`{python} -m pip install ultralytics`)"
        in (result.stderr)
    )


def test_cli_bad_python_is_named(tmp_path):
    result = run_cli("inject", "--installed", "--python", str(tmp_path / "nope"))
    assert result.returncode == 1 and "--python" in result.stderr and "cannot run it" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["inject"], id="neither-repo-nor-installed"),
        pytest.param(["inject", ".", "--installed"], id="both-repo-and-installed"),
    ],
)
def test_cli_inject_needs_one_target(args):
    result = run_cli(*args)
    assert result.returncode == 2


def test_missing_ultralytics_in_the_check_child_says_how_to_install(monkeypatch):
    from yolopatch.targets.ultralytics.child import import_tasks

    monkeypatch.setitem(sys.modules, "ultralytics", None)
    with pytest.raises(YolopatchError, match=r"ultralytics is not installed: install it .*--repo"):
        import_tasks("-")


def site_environment(tmp_path: Path) -> tuple[Package, dict[str, str]]:
    """A stand-in ultralytics that this Python imports (through PYTHONPATH) as if installed."""
    site = tmp_path / "site"
    package = make_package(site)
    return package, {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_cli_check_after_an_upgrade_says_what_to_run_and_inject_restores_the_same_operators(tmp_path):
    package, env = site_environment(tmp_path)
    assert run_cli("inject", "--installed", "--op", "se,eca", env=env).returncode == 0
    injected = snapshot(package.root)
    package.tasks.write_text(tasks_text())  # pip install -U ultralytics
    package.init.write_text(ULTRALYTICS_INIT)
    result = run_cli("inject", "--installed", "--check", env=env)
    assert result.returncode == 1
    assert "upgraded or reinstalled since yolopatch injected ECA, SE" in result.stderr
    assert "yolopatch inject --installed --op eca,se" in result.stderr
    assert run_cli("inject", "--installed", env=env).returncode == 0  # no --op: the ones injected before
    assert snapshot(package.root) == injected


def test_revert_and_a_check_after_an_upgrade_name_the_checkpoints_that_will_not_load(tmp_path):
    package, env = site_environment(tmp_path)
    work = tmp_path / "work"
    runs = work / "runs" / "detect"
    best = write_checkpoint(runs / "train" / "weights" / "best.pt", "ultralytics.nn.modules.yolopatch", "SE")
    write_checkpoint(runs / "plain" / "weights" / "best.pt", "ultralytics.nn.modules.conv", "Conv")
    old = work / "deep" / "other" / "old.pt"  # not where runs go
    write_checkpoint(old, "ultralytics.nn.modules.yolopatch", "SE")
    assert run_cli("inject", "--installed", "--op", "se,eca", env=env, cwd=work).returncode == 0
    package.tasks.write_text(tasks_text())  # pip install -U ultralytics
    package.init.write_text(ULTRALYTICS_INIT)
    checked = run_cli("inject", "--installed", "--check", env=env, cwd=work)
    assert checked.returncode == 1
    assert f"1 checkpoint(s) hold ECA, SE layers ({best.resolve()}) and will not load until" in checked.stderr
    assert run_cli("inject", "--installed", env=env, cwd=work).returncode == 0
    reverted = run_cli("inject", "--installed", "--revert", env=env, cwd=work)
    assert reverted.returncode == 0
    assert f"1 checkpoint(s) hold SE layers ({best.resolve()})" in reverted.stderr
    assert "To load them again: yolopatch inject --installed --op SE\n" in reverted.stderr


def test_cli_next_step_after_apply_injects_what_the_yaml_uses_then_checks_and_trains(tmp_path):
    _, env = site_environment(tmp_path)
    model = tmp_path / "yolov8n.yaml"
    model.write_text(fixture_text("ultralytics/scales.yaml"), encoding="utf-8")
    written = tmp_path / "a.yaml"
    result = run_cli("apply", str(model), "-l", "2", "--insert", "--op", "se", "-o", str(written), env=env)
    assert f"Next: yolopatch inject --installed --for {written}" in result.stdout
    assert f"yolopatch check {written}   and   yolo train model={written}" in result.stdout
    injected = run_cli("inject", "--installed", "--for", str(written), env=env)
    assert injected.returncode == 0, injected.stderr
    assert run_cli("inject", "--installed", "--for", str(written), "--check", env=env).returncode == 0


def test_cli_diff_shows_the_new_file_and_writes_nothing(tmp_path):
    package = make_package(tmp_path)
    before = snapshot(tmp_path)
    result = run_cli("inject", str(tmp_path), "--op", "se", "--diff")
    assert result.returncode == 0
    assert f"+++ {package.module}" in result.stdout and "+class SE(nn.Module):" in result.stdout
    assert f"+++ {package.tasks}" in result.stdout and "+from .yolopatch import SE" in result.stdout
    assert snapshot(tmp_path) == before
