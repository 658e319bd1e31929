"""The Target contract: what every family in the registry does, each on its own fixtures (providers.py).

A family claims its own yamls and locates its own checkouts; inject twice equals once and lists what it
injected; revert restores every byte (line endings included) and names the checkpoints that stop loading; a
revert with nothing injected changes nothing; its own code builds an injected operator with the parameters
yolopatch reports. What only one family does (its flavours, its formatting styles, its messages) is tested
in that family's files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from helpers import STUBS, run_cli, snapshot, user_csp, user_se, write_checkpoint
from providers import LAYOUTS, PROVIDERS, Provider, provider_for

from yolopatch.build.check import check_builtin
from yolopatch.channels import modules_of
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.files import write_changes
from yolopatch.formats.base import FormatRequest
from yolopatch.formats.registry import format_for
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import DEFAULT, OPERATORS, get_operator
from yolopatch.targets import registry
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.registry import TARGETS

# the operators injected: every built-in one (that the provider's code does not refuse), or two of your own
# (a module that keeps its channels, and a CSP block that goes into parse_model's repeat collection too)
OPERATOR_SETS = {
    "built-in": lambda folder, provider: [op for op in OPERATORS.values() if op.name not in provider.refuses],
    "yours": lambda folder, provider: [user_se(folder), user_csp(folder)],
}

# every target on its own provider, and on each further layout it handles (providers.LAYOUTS)
CASES = [(target, "") for target in TARGETS] + [
    (registry.target_named(name), layout) for layout, (name, _) in LAYOUTS.items()
]


@pytest.fixture(params=CASES, ids=lambda case: case[1] or case[0].name)
def case(request) -> tuple[Target, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def target(case) -> Target:
    return case[0]


@pytest.fixture
def provider(case) -> Provider:
    return LAYOUTS[case[1]][1] if case[1] else provider_for(case[0])


@pytest.fixture
def root(provider, tmp_path) -> Path:
    """The family's stand-in checkout (or package folder)."""
    return provider.make(tmp_path / "repo")


def _inject(target: Target, root: Path, operators) -> None:
    write_changes(target.inject(target.locate(root), operators, False, sys.executable).changes)


def test_it_claims_its_own_yaml_and_no_other_family_claims_it_as_strongly(target, provider):
    if target.model_suffix != ".yaml":  # it builds another format's files: it claims no yaml, they claim none
        assert format_for(Path(f"m{target.model_suffix}")) is not None
        yamls = [p.yaml for n, p in PROVIDERS.items() if registry.target_named(n).model_suffix == ".yaml"]
        assert [
            target.claims(v, modules_of(v)) for v in (parse_model_yaml(y, "m.yaml").values for y in yamls)
        ] == [0] * len(yamls)
        return
    values = parse_model_yaml(provider.yaml, "m.yaml").values
    assert registry.target_for(values) is target
    modules = modules_of(values)
    own = target.claims(values, modules)
    assert [t.name for t in TARGETS if t is not target and t.claims(values, modules) >= own] == []


def test_locate_finds_its_checkout_from_every_folder_a_user_may_name(target, provider, root):
    for place in provider.places:
        assert target.locate(root / place) is not None, place
        assert registry.locate(root / place)[0] is target, place
    others = [t.name for t in TARGETS if t is not target and not t.fallback and t.locate(root) is not None]
    assert others == []


@pytest.mark.parametrize("operators", list(OPERATOR_SETS))
def test_inject_twice_equals_once_and_injected_lists_the_operators(
    target, provider, root, tmp_path, operators
):
    ops = OPERATOR_SETS[operators](tmp_path, provider)
    where = target.locate(root)
    assert target.injected(where) == []
    plan = target.inject(where, ops, False, sys.executable)
    assert plan.changed
    write_changes(plan.changes)
    assert sorted(target.injected(where)) == sorted(op.name for op in ops)
    assert not target.inject(where, ops, False, sys.executable).changed  # and so `inject --check` passes


@pytest.mark.parametrize("operators", list(OPERATOR_SETS))
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_revert_restores_every_byte_and_the_files_keep_their_line_endings(
    target, provider, root, tmp_path, operators, newline
):
    for path in root.rglob("*.py"):
        path.write_bytes(path.read_bytes().replace(b"\n", newline.encode()))
    pristine = snapshot(root)
    _inject(target, root, OPERATOR_SETS[operators](tmp_path, provider))
    for name, data in snapshot(root).items():
        if name in pristine:  # an edited file keeps its line endings, on the added lines too
            assert data.count(b"\n") == data.count(newline.encode()), name
    write_changes(target.revert(target.locate(root), None, False).changes)
    assert snapshot(root) == pristine


def test_a_revert_with_nothing_injected_changes_nothing(target, root):
    pristine = snapshot(root)
    assert not target.revert(target.locate(root), None, False).changed
    result = run_cli("inject", str(root), "--revert")
    assert result.returncode == 0 and "nothing to revert" in result.stderr
    assert snapshot(root) == pristine


def test_revert_names_the_checkpoints_that_hold_the_operators_classes(target, provider, root, monkeypatch):
    cbam = get_operator("cbam")
    _inject(target, root, [cbam])
    best = root / "runs" / "train" / "exp" / "weights" / "best.pt"
    write_checkpoint(best, provider.pickles_as, "CBAM")
    write_checkpoint(root / "stock.pt", provider.pickles_as, "Conv")
    (root / "broken.pt").write_bytes(b"not a zip")
    monkeypatch.chdir(root)
    plan = target.revert(target.locate(root), None, False)
    (warning,) = plan.warnings
    assert warning.startswith("1 checkpoint(s) ") and "hold CBAM layers" in warning
    assert (plan.checkpoints, plan.needed) == ((best.resolve(),), ("CBAM",))


@pytest.mark.real
def test_its_own_code_builds_an_injected_operator_with_the_parameters_yolopatch_reports(
    target, provider, tmp_path, request, monkeypatch
):
    """The family's yaml with an Involution in place of a layer and an SE inserted after it, both injected
    into a copy of a real release: the release's own model class (`check --repo`) has the parameters of the
    built-in builder, or, for a family without one, of its own model class built directly."""
    if target.builtin() is None and provider.own_params is None and target.model_suffix == ".yaml":
        pytest.skip(f"{target.name} has no built-in builder and its provider no own_params")
    release = provider.release(request.getfixturevalue(provider.real), tmp_path)
    se = get_operator("cbam" if "SE" in provider.refuses else "se")  # inserted after the layer
    _inject(target, release, [DEFAULT, se])
    monkeypatch.setenv("PYTHONPATH", str(STUBS))  # torchvision's stand-in: the families import it
    if target.model_suffix != ".yaml":  # another format: its own apply, and its built-in builder's count
        path = tmp_path / f"m{target.model_suffix}"
        fmt = format_for(path)
        assert fmt is not None
        text = provider.yaml
        for op, insert in ((se, True), (DEFAULT, False)):
            values = {o.name: o.default for o in op.options}
            text = fmt.apply(text, provider.layer, FormatRequest(op, values, insert), path.name).text
        path.write_text(text, encoding="utf-8")
        theirs = target.check(CheckRequest(path, text, release, None, 64, 1))
        ours = fmt.check(text, str(path), 64, 1)
        assert DEFAULT.name in {layer.operator for layer in theirs.layers}
        assert [(r.module, r.params) for r in theirs.layers] == [(r.module, r.params) for r in ours.layers]
        assert (theirs.params, round(theirs.gflops, 1)) == (ours.params, round(ours.gflops, 1))
        return
    text = apply_operator(provider.yaml, provider.layer, ApplyOptions()).text
    text = apply_operator(text, provider.layer, ApplyOptions(se, insert=True)).text
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    theirs = target.check(CheckRequest(path, text, release, None, 64, 1))
    assert {DEFAULT.name, se.name} <= {layer.module for layer in theirs.layers}
    if target.builtin() is not None:
        ours = check_builtin(target, text, str(path), 64, 1)
        assert (theirs.params, round(theirs.gflops, 1)) == (ours.params, round(ours.gflops, 1))
    else:
        assert theirs.params == provider.own_params(release, path)  # type: ignore[misc]
