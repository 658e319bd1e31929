"""Your own module: `ops add` learns the rule a class really has or refuses saying what to declare; where
its forward is, the record, the adapter, and `apply` then `check` with the user's operator (the rule
vocabulary and `apply` alone, without a probe: tests/test_userop_rules.py).

The classes are our own, in the shapes and spellings of real modules (tests/user_module_cases.py).
"""

from __future__ import annotations

import ast
import functools
import tempfile
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT, STUBS, run_cli
from user_module_cases import CASES, USER_MODULES, Case

from yolopatch.commands.ops import AddResult, ProbeTarget, add_operator, remove_operator
from yolopatch.errors import YolopatchError
from yolopatch.targets.registry import import_kinds
from yolopatch.userop.adapter import adapter_source
from yolopatch.userop.learn import Rule
from yolopatch.userop.record import load
from yolopatch.userop.roles import role_map
from yolopatch.userop.source import read_class

LEARNED = [c for c in CASES if c.refusal is None and c.imports_target is None]
REFUSED = [c for c in CASES if c.refusal is not None]

# what each refusal's message must say (the user's next step is in it too)
REFUSAL_WORDS = {
    "head": "detection head",
    "several-tensors": "several tensors",
    "outside-vocabulary": "follow no rule",
    "not-a-multiple": "no fixed multiple of the input's at every width",
    "backward-fails": "cannot be trained",
    "input-gradient": "passes back to its input is not finite",
    "not-a-module": "not a torch module",
    "syntax": "does not parse",
    "unknown-class": "defines no top-level class",
    "not-4d": "4-D feature map",
    "memory": "ran out of memory",
    "time": "time limit",
}


def _settings(case: Case) -> dict[str, str]:
    return {k: repr(v) for k, v in case.set_values.items()}


def _true_role(case: Case, param: str) -> str:
    """The cases name an upsampling factor's role "stride"; yolopatch calls it "up"."""
    role = case.roles[param]
    return "up" if role == "stride" and (case.stride or "").startswith("up:") else role


@functools.cache
def _learned(case_id: str) -> AddResult:
    """`ops add` of one case, probed once per test process (the record goes to a scratch folder)."""
    case = next(c for c in CASES if c.id == case_id)
    folder = Path(tempfile.mkdtemp(prefix="yolopatch-learned-"))
    return add_operator(case.spec, folder, settings=_settings(case), timeout=60)


@pytest.mark.parametrize("case", LEARNED, ids=[c.id for c in LEARNED])
def test_ops_add_learns_the_rule_the_class_really_has(case):
    op = _learned(case.id).op
    assert op.rule == Rule(case.channels, case.stride)
    assert dict(op.roles) == {p: _true_role(case, p) for p in case.roles}
    divisor = int(case.constraint.split(":")[1]) if case.constraint else 1
    assert op.divisor == divisor
    assert bool(op.unused) == case.unused_params
    assert op.sha256 and op.file == case.path.resolve()


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_ops_add_refuses_what_it_cannot_take_and_says_why(case, tmp_path):
    timeout = 3 if case.refusal == "time" else 60
    with pytest.raises(YolopatchError) as info:
        add_operator(case.spec, tmp_path, settings=_settings(case), timeout=timeout)
    message = str(info.value)
    assert REFUSAL_WORDS[case.refusal] in message
    assert str(case.path) in message and "\n" not in message
    assert not (tmp_path / "yolopatch.toml").exists()


@pytest.mark.parametrize(
    ("case_id", "missing"),
    [
        ("odconv", "kernel_size"),
        ("akconv", "num_param"),
        ("seam-like-c2-n", "n"),
        ("strided-kernel-conv", "kernel_size"),
    ],
)
def test_arguments_without_defaults_are_asked_for_by_name(case_id, missing, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    with pytest.raises(YolopatchError, match=f"--set {missing}=VALUE"):
        add_operator(case.spec, tmp_path, timeout=60)


# what the record's evidence says for the cases that are learned from something other than a free argument
EVIDENCE = [
    pytest.param(
        "context-guided-down", "2*c1: out = 2·in at 32 and 64 channels and at every width", id="2-c1"
    ),
    pytest.param("reorg-like", "4*c1: out = 4·in at 32 and 64 channels and at every width", id="4-c1"),
    pytest.param("reorg-like", "no weights: the gradient reaches its input, finite", id="reorg-no-weights"),
    pytest.param("energy-attention", "no weights: the gradient reaches its input, finite", id="simam-like"),
    pytest.param(
        "fixed-up-ignores-scale-factor",
        "scale_factor is ignored (8x8 -> 16x16 at scale_factor=2 and at scale_factor=4): a fixed upsampling by 2",
        id="hard-wired-x2",
    ),
]


@pytest.mark.parametrize(("case_id", "words"), EVIDENCE)
def test_the_evidence_says_how_the_rule_was_shown(case_id, words):
    assert any(words in line for line in _learned(case_id).op.evidence)


# the file imports the base class from a target: the probe runs the target's forward (a stand-in on its path)
TARGETS_ON_THE_PATH = {
    "yolov5": ProbeTarget("a YOLOv5 stand-in", sys_path=(str(USER_MODULES / "v5_standin"),)),
    "ultralytics": ProbeTarget("ultralytics as this Python imports it", sys_path=(str(STUBS),)),
}
INHERITED = [c for c in CASES if c.imports_target and "subclass" in c.id]


@pytest.mark.parametrize("case", INHERITED, ids=[c.id for c in INHERITED])
def test_a_subclass_of_a_targets_block_is_probed_with_the_targets_forward(case, tmp_path):
    target = TARGETS_ON_THE_PATH[case.imports_target]
    op = add_operator(case.spec, tmp_path, target=target, timeout=60).op
    assert op.rule == Rule(case.channels, case.stride) and dict(op.roles) == case.roles
    assert op.target == target.description


# --- where the forward is, from the source alone ------------------------------------------------------------

FORWARDS = [
    pytest.param("class M(nn.Module):\n    def forward(self, x):\n        return x\n", None, id="its-own"),
    pytest.param(
        "class B(nn.Module):\n    def forward(self, x):\n        return x\n\n\nclass M(B):\n    pass\n",
        None,
        id="a-base-in-the-file",
    ),
    pytest.param(
        "class M(nn.Module):\n    def __init__(self, c1):\n        super().__init__()\n"
        "        self.forward = self.forward_split_cat\n\n    def forward_split_cat(self, x):\n        return x\n",
        None,
        id="bound-in-init",
    ),
    pytest.param(
        "class M(nn.Module):\n    def __init__(self, c1):\n        super().__init__()\n        self.forward = self.fuse\n\n"
        "    def fuse(self, a, b):\n        return a + b\n",
        "YOLO passes one list",
        id="a-bound-forward-is-checked-like-its-own",
    ),
    pytest.param(
        "class M(C2f):\n    def __init__(self, c1, c2, n=1):\n        super().__init__(c1, c2, n)\n",
        None,
        id="an-imported-bases",
    ),
    pytest.param(
        "class M(nn.Sequential):\n    def __init__(self, c1):\n        super().__init__(nn.Conv2d(c1, c1, 1))\n",
        None,
        id="torchs-own-module",
    ),
    pytest.param("class M(C2f):\n    pass\n", "takes its constructor from C2f", id="an-imported-constructor"),
    pytest.param(
        "class M(nn.Module):\n    def __init__(self, c1):\n        super().__init__()\n",
        "has no forward method",
        id="none",
    ),
]


@pytest.mark.parametrize(("body", "refusal"), FORWARDS)
def test_the_forward_is_found_where_python_finds_it(body, refusal, tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        f"import torch.nn as nn\nfrom ultralytics.nn.modules import C2f\n\n\n{body}", encoding="utf-8"
    )
    if refusal is None:
        assert read_class(path, "M", import_kinds()).name == "M"
        return
    with pytest.raises(YolopatchError, match=refusal):
        read_class(path, "M", import_kinds())


# --- the role map, from names alone -------------------------------------------------------------------------

ROLE_MAPS = [
    pytest.param("channel=512, reduction=16", {"channel": "c1", "reduction": "-"}, id="se-channel-reduction"),
    pytest.param(
        "c1, n=1, reduction=16", {"c1": "c1", "n": "n", "reduction": "-"}, id="seam-n-is-a-candidate"
    ),
    pytest.param("no_spatial=False", {"no_spatial": "-"}, id="no-channel-parameter"),
    pytest.param("inp, oup, stride=1", {"inp": "c1", "oup": "c2", "stride": "stride"}, id="inp-oup"),
    pytest.param(
        "in_planes, out_planes, kernel_size",
        {"in_planes": "c1", "out_planes": "c2", "kernel_size": "-"},
        id="planes",
    ),
    pytest.param("dim, dim_out=None", {"dim": "c1", "dim_out": "-"}, id="none-default-is-not-a-count"),
    pytest.param("in_channels, scale=2", {"in_channels": "c1", "scale": "up"}, id="upsampler"),
    pytest.param("c, ch=16", {"c": "c1", "ch": "-"}, id="one-input-role-only"),
    pytest.param("channels, shortcut=True", {"channels": "c1", "shortcut": "-"}, id="flag-stays-an-option"),
]


@pytest.mark.parametrize(("signature", "expected"), ROLE_MAPS)
def test_role_map_from_parameter_names(signature, expected, tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        f"import torch.nn as nn\n\n\nclass M(nn.Module):\n    def __init__(self, {signature}):\n        super().__init__()\n\n"
        "    def forward(self, x):\n        return x\n",
        encoding="utf-8",
    )
    assert dict(role_map(read_class(path, "M", import_kinds()), {}).roles) == expected


def test_declared_roles_beat_the_names(tmp_path):
    source = read_class(USER_MODULES / "attention.py", "SEAM", import_kinds())
    roles = role_map(source, {"n": "-", "reduction": "-"})
    assert roles.roles["n"] == "-" and roles.declared == {"n", "reduction"}


# --- the adapter: channel counts only where the map says channels --------------------------------------------

ADAPTER_CALLS = [
    pytest.param(
        "se-attention", "super().__init__(channel=c1, reduction=reduction)", id="se-reduction-untouched"
    ),
    pytest.param("seam", "super().__init__(c1=c1, n=n, reduction=reduction)", id="seam-depth-is-its-own"),
    pytest.param("triplet-attention", "super().__init__(no_spatial=no_spatial)", id="flag-never-gets-c2"),
    pytest.param("c2f-lite", "super().__init__(c1=c1, c2=c2, n=n, shortcut=shortcut, e=e)", id="csp-gets-n"),
]


@pytest.mark.parametrize(("case_id", "call"), ADAPTER_CALLS)
def test_adapter_passes_channel_counts_only_to_channel_parameters(case_id, call):
    op = _learned(case_id).op
    source = adapter_source(op, "Base")
    ast.parse(source)
    assert call in source
    if op.rule.channels == "keep":
        assert "if c2 != c1:" in source


def test_a_multiple_blocks_adapter_ignores_c2_and_refuses_one_that_is_not_the_multiple():
    import torch

    from yolopatch.children.users import adapter_classes

    op = _learned("context-guided-down").op
    (cls,) = adapter_classes([op]).values()
    assert cls(32, 64)(torch.randn(1, 32, 16, 16)).shape == (1, 64, 8, 8)
    with pytest.raises(ValueError, match=r"outputs 2\*c1 channels: c2 \(48\) must be 2 \* c1 \(64\)"):
        cls(32, 48)


def test_seam_given_96_output_channels_keeps_its_own_depth():
    import torch

    from yolopatch.children.users import adapter_classes

    op = _learned("seam").op
    (cls,) = adapter_classes([op]).values()
    module = cls(64, 64)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in module.modules()) < 10
    with pytest.raises(ValueError, match="keeps its channels"):
        cls(64, 96)


# --- the record ------------------------------------------------------------------------------------------------


def test_the_record_keeps_the_users_comments_and_round_trips(tmp_path):
    config = tmp_path / "yolopatch.toml"
    config.write_text("# my notes: keep me\n[tool]\nx = 1  # and me\n", encoding="utf-8")
    case = next(c for c in CASES if c.id == "ema")
    result = add_operator(case.spec, tmp_path, timeout=60)
    config.write_text(result.change.new, encoding="utf-8")
    text = config.read_text(encoding="utf-8")
    assert "# my notes: keep me" in text and "x = 1  # and me" in text
    (op,) = load(config).values()
    assert op == result.op
    removed = remove_operator("EMA", tmp_path).new
    assert "# my notes: keep me" in removed and "[ops.EMA]" not in removed


def test_a_changed_file_is_named_and_apply_asks_for_ops_add_again(tmp_path):
    source = tmp_path / "mine.py"
    source.write_bytes((USER_MODULES / "se_attention.py").read_bytes())
    model = tmp_path / "m.yaml"
    model.write_text(EXAMPLE, encoding="utf-8")
    added = run_cli("ops", "add", "mine.py:SEAttention", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    source.write_text(source.read_text(encoding="utf-8") + "\n# edited\n", encoding="utf-8")
    result = run_cli("apply", "m.yaml", "--layers", "9", "--insert", "--op", "SEAttention", cwd=tmp_path)
    assert result.returncode == 1
    assert "changed since `ops add` learned SEAttention" in result.stderr and "ops add" in result.stderr


@pytest.mark.parametrize(
    ("name", "owner"),
    [("CBAM", "built-in operator CBAM"), ("C3", "YOLOv5's class C3"), ("C2f", "ultralytics' class C2f")],
)
def test_a_name_a_target_or_builtin_has_is_refused(name, owner, tmp_path):
    case = next(c for c in CASES if c.id == "se-attention")
    with pytest.raises(YolopatchError, match=owner):
        add_operator(case.spec, tmp_path, name=name, timeout=60)


def test_a_declared_rule_the_probe_contradicts_is_refused(tmp_path):
    case = next(c for c in CASES if c.id == "spdconv")
    with pytest.raises(YolopatchError, match="does not hold: the probe shows conv:2"):
        add_operator(case.spec, tmp_path, rule="conv", timeout=60)


# --- end to end: ops add, apply, check (in a child: the user's code never runs in the CLI) --------------------


def test_ops_add_apply_and_check_agree_on_parameters(tmp_path):
    (tmp_path / "se.py").write_bytes((USER_MODULES / "se_attention.py").read_bytes())
    (tmp_path / "yolov5s.yaml").write_text(EXAMPLE, encoding="utf-8")
    assert run_cli("ops", "add", "se.py:SEAttention", cwd=tmp_path).returncode == 0
    applied = run_cli(
        "apply", "yolov5s.yaml", "--layers", "9", "--insert", "--op", "SEAttention", cwd=tmp_path
    )
    assert applied.returncode == 0, applied.stderr
    checked = run_cli("check", "yolov5s-seattention.yaml", "--img", "128", "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    import json

    report = json.loads(checked.stdout)["model"]
    assert any("also ran forward and backward at 160x160" in w for w in report["warnings"])
    layer = report["layers"][10]
    c = 512  # yolov5s' width halves the yaml's 1024
    assert layer["operator"] == "SEAttention" and layer["params"] == 2 * c * (c // 16)  # two bias-free Linear
    assert report["params"] == 7235389 + 2 * c * (c // 16)


def test_a_doubling_down_block_replaces_the_down_convs_and_builds_with_its_own_parameters(tmp_path):
    import importlib.util
    import json

    (tmp_path / "multiples.py").write_bytes((USER_MODULES / "multiples.py").read_bytes())
    (tmp_path / "yolov5s.yaml").write_text(EXAMPLE, encoding="utf-8")
    added = run_cli("ops", "add", "multiples.py:ContextGuidedBlock_Down", "--name", "CGDown", cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    applied = run_cli("apply", "yolov5s.yaml", "--layers", "backbone:Conv", "--op", "CGDown", cwd=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert "layer 0 (Conv) left as it is: CGDown outputs 2x its input's channels" in applied.stderr
    checked = run_cli("check", "yolov5s-cgdown.yaml", "--img", "128", "--json", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    spec = importlib.util.spec_from_file_location("multiples_fixture", USER_MODULES / "multiples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    layers = json.loads(checked.stdout)["model"]["layers"]
    for index, c1 in ((1, 32), (3, 64), (5, 128), (7, 256)):  # yolov5s halves the yaml's channels
        block = module.ContextGuidedBlock_Down(c1)
        assert layers[index]["operator"] == "CGDown"
        assert layers[index]["params"] == sum(p.numel() for p in block.parameters())


# --- a file that imports from a target is probed with that target's code --------------------------------------


def test_a_file_written_for_yolov5_is_probed_with_the_checkout_named(tmp_path):
    case = next(c for c in CASES if c.id == "v5-conv-gate")
    with pytest.raises(YolopatchError, match="name the checkout it was written for with --repo PATH"):
        add_operator(case.spec, tmp_path, timeout=60)
    checkout = ROOT / "tests" / "fixtures" / "checkouts" / "master"
    result = run_cli("ops", "add", case.spec, "--repo", str(checkout), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (op,) = load(tmp_path / "yolopatch.toml").values()
    assert op.rule == Rule("conv") and op.target == f"YOLOv5 checkout {checkout}"
    assert f"learned against YOLOv5 checkout {checkout}" in result.stdout


def test_a_file_written_for_ultralytics_is_probed_with_the_ultralytics_this_python_imports(tmp_path):
    case = next(c for c in CASES if c.id == "ultra-conv-gate")
    result = run_cli("ops", "add", case.spec, cwd=tmp_path, env={"PYTHONPATH": str(ROOT / "tests" / "stubs")})
    assert result.returncode == 0, result.stderr
    (op,) = load(tmp_path / "yolopatch.toml").values()
    assert op.rule == Rule("conv") and op.target == "ultralytics as this Python imports it"


def test_a_relative_import_is_refused_with_the_full_name_to_use(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text("from .common import Conv\n\n\nclass M(Conv):\n    pass\n", encoding="utf-8")
    with pytest.raises(YolopatchError, match=r"mine.py:1: a relative import \(from .common import Conv\)"):
        add_operator(f"{path}:M", tmp_path)
