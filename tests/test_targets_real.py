"""YOLOv7 and YOLOv9 on the real repositories as PyPI packages them (downloaded into the test cache, never
committed): every stock yaml is claimed by its family and simulated with the channels its own Model builds;
the built-in builder gives the parameters of the family's own Model; inject then revert is byte-identical on
the real trees, and the family's own Model builds every built-in operator once injected.

The family's own code runs only in `check --repo`'s child (it edits sys.path and global state on import).
"""

from __future__ import annotations

import functools
import itertools
import json
import random
import re
import shutil
from pathlib import Path

import pytest
from helpers import EXHAUSTIVE, STUBS, build_of, check_yaml, geometry_of, run_cli, snapshot, sweep_cases

from yolopatch.channels import simulate
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import OPERATORS
from yolopatch.targets.registry import target_for

# torchvision cannot load beside the CPU torch here: the families import it, a build uses none of it
CHILD = {"PYTHONPATH": str(STUBS)}
# The yamls whose build covers each family's traps, checked by default (-m exhaustive: every one)
FEATURED = {
    "yolov9-c.yaml",  # Silence, CBLinear/CBFuse, DualDDetect
    "gelan.yaml",  # `activation: nn.ReLU()`
    "gelan-s.yaml",  # ELAN1, AConv
    "yolov7-af.yaml",  # YOLOv7's body in YOLOv9
    "training/yolov7.yaml",  # MP, SPPCSPC, RepConv, IDetect
    "training/yolov7-tiny.yaml",  # LeakyReLU arguments, SP
    "training/yolov7-w6.yaml",  # ReOrg, IAuxDetect with 8 inputs, stride 64
    "deploy/yolov7-e6e.yaml",  # Shortcut, DownC, the largest graph
}


def _yamls(wky_packages: dict[str, Path]) -> dict[str, list[Path]]:
    cfg = wky_packages["yolov7-checkout"] / "cfg"
    return {
        "YOLOv9": sorted((wky_packages["yolo9"] / "models" / "detect").glob("*.yaml")),
        "YOLOv7": sorted([*(cfg / "training").glob("*.yaml"), *(cfg / "deploy").glob("*.yaml")]),
    }


def _name(path: Path) -> str:
    return path.name if path.parent.name == "detect" else f"{path.parent.name}/{path.name}"


def _img(path: Path) -> int:
    """A multiple of the largest stride: 64 for the P6 models."""
    return 128 if "6" in path.stem.split("-")[-1] else 64


def test_every_stock_yaml_is_claimed_by_its_family(wky_packages):
    for family, paths in _yamls(wky_packages).items():
        assert len(paths) == (14 if family == "YOLOv9" else 15)
        for path in paths:
            assert target_for(parse_model_yaml(path.read_text(), str(path)).values).name == family, path


def _own_model(repo: Path, paths: list[Path], img: int, tmp_path: Path, batch: int = 1) -> list[dict]:
    """`check --repo` of every yaml, in one child: the family's own Model's per-layer report."""
    size = ["--img", str(img), "--batch", str(batch)]
    result = run_cli("check", *map(str, paths), "--repo", str(repo), *size, "--json", env=CHILD)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return data["models"] if len(paths) > 1 else [data["model"]]


def _channels(output: str) -> int | None:
    """The channels of a layer's one 4-D output ("[1, 64, 32, 32]"); None for heads and lists."""
    shapes = re.findall(r"\[(\d+), (\d+), \d+, \d+\]", output)
    return int(shapes[0][1]) if len(shapes) == 1 and output.count("[") == 1 else None


ALL = ",".join(op.name.lower() for op in OPERATORS.values())
# the trees whose yaml with every operator the stock test's child builds too: (tree, stock yaml, layers)
IN_THE_STOCK_CHILD = {
    "YOLOv9": ("yolo9", "yolov9-c.yaml", "3,9,16,22"),
    "YOLOv7": ("yolov7", "training/yolov7.yaml", "24,37,50,63"),
}
_COPY_IGNORE = shutil.ignore_patterns("__pycache__", "*.dist-info", "*.pt")


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("family", ["YOLOv7", "YOLOv9"])
def test_stock_yamls_simulate_and_build_as_the_familys_own_model(wky_packages, tmp_path, family, exhaustive):
    """Per layer, the simulated channels are the own Model's; the built-in builder's parameters and layer
    count are the own Model's, as its summary line prints them. The family's package has every operator
    injected meanwhile (then reverted byte for byte): the same child builds a yaml with every operator too
    (see _check_every_operator; the other trees in the test below)."""
    tree, yaml, layers = IN_THE_STOCK_CHILD[family]
    repo = tmp_path / "site" / tree
    shutil.copytree(wky_packages[tree], repo, ignore=_COPY_IGNORE)
    pristine = snapshot(repo)
    model, stock = _inject_every_operator(repo, wky_packages, family, yaml, layers, tmp_path)
    paths = [p for p in _yamls(wky_packages)[family] if exhaustive or _name(p) in FEATURED]
    # every yaml in one child, at 64: the P6 models' stride-64 output is then 1x1, so batch 2 for BatchNorm
    batch = 2 if any(_img(p) > 64 for p in paths) else 1
    *reports, with_operators = _own_model(repo, [*paths, model], 64, tmp_path, batch)
    for path, theirs in zip(paths, reports, strict=True):
        text = path.read_text(encoding="utf-8")
        parsed = parse_model_yaml(text, str(path))
        shapes = simulate(parsed.logical_rows(), geometry_of(parsed.values), str(path)).shapes
        for layer, shape in zip(theirs["layers"], shapes, strict=True):
            built = _channels(layer["output"])
            if built is not None and shape.c2 is not None:
                assert shape.c2 == built, (path.name, layer["index"], layer["module"])
        # the figures compared do not depend on the batch: ours at batch 2 only where BatchNorm needs it
        ours = check_yaml(text, str(path), 64, 2 if _img(path) > 64 else 1)
        assert (ours.params, ours.modules) == (theirs["params"], theirs["modules"]), path.name
        assert f"{ours.modules} layers, {ours.params} parameters" in theirs["reference"], path.name
    assert _img(stock) == 64  # the operators' yaml, built at the stock yamls' size
    _check_every_operator(with_operators, model)
    _revert(repo, pristine)


@pytest.fixture
def trees(wky_packages, tmp_path) -> dict[str, Path]:
    """Copies of the three real trees, each under its package's own name (absolute imports need it)."""
    copies = {
        "yolo9": tmp_path / "site" / "yolo9",
        "yolov7": tmp_path / "site" / "yolov7",
        "yolov7-easy": tmp_path / "easy" / "yolov7",
        "yolov7-checkout": tmp_path / "yolov7",
    }
    for name, copy in copies.items():
        shutil.copytree(wky_packages[name], copy, ignore=_COPY_IGNORE)
    return copies


def _inject_every_operator(
    repo: Path, wky_packages: dict[str, Path], family: str, yaml: str, layers: str, tmp_path: Path
) -> tuple[Path, Path]:
    """Inject every operator into `repo` (twice equals once); a copy of the stock `yaml` with every operator
    in `layers` (replacing where the layer allows it, else inserted after). The yaml and its stock file."""
    injected = run_cli("inject", str(repo), "--op", ALL)
    assert injected.returncode == 0, injected.stderr
    assert run_cli("inject", str(repo), "--op", ALL, "--check").returncode == 0  # twice equals once
    stock = next(p for p in _yamls(wky_packages)[family] if _name(p) == yaml)
    model = tmp_path / f"with-operators-{stock.name}"
    text = stock.read_text(encoding="utf-8")
    for op, layer in zip(OPERATORS.values(), itertools.cycle(layers.split(",")), strict=False):
        insert = op.name in ("SimAM", "CoordAtt")
        try:
            text = apply_operator(text, layer, ApplyOptions(op, insert=insert), str(stock)).text
        except YolopatchError:
            text = apply_operator(text, layer, ApplyOptions(op, insert=True), str(stock)).text
    model.write_text(text, encoding="utf-8")
    return model, stock


def _check_every_operator(theirs: dict, model: Path) -> None:
    """The own Model's report of the yaml with every operator: it has them all, and the built-in builder's
    parameters."""
    used = {layer["module"] for layer in theirs["layers"]}
    assert {op.name for op in OPERATORS.values()} <= used
    ours = check_yaml(model.read_text(encoding="utf-8"), str(model), 64, 1)
    # the module counts may differ: a YOLOv7 tree's Conv inside Involution has a SiLU of its own
    assert ours.params == theirs["params"] and f"{ours.params} parameters" in theirs["reference"]


def _revert(repo: Path, pristine: dict[str, bytes]) -> None:
    reverted = run_cli("inject", str(repo), "--revert")
    assert reverted.returncode == 0, reverted.stderr
    assert snapshot(repo) == pristine


@pytest.mark.parametrize(
    ("tree", "family", "yaml", "layers"),
    [
        # the packages (yolo9, yolov7detect) in test_stock_yamls_simulate_and_build_as_the_familys_own_model
        pytest.param(
            "yolov7-checkout", "YOLOv7", "training/yolov7-tiny.yaml", "7,14,21,28", id="yolov7-checkout"
        ),
        pytest.param("yolov7-easy", "YOLOv7", "deploy/yolov7.yaml", "24,37,50,63", id="yolov7-easy-crlf"),
    ],
)
def test_inject_builds_every_operator_with_the_own_model_and_reverts_byte_for_byte(
    wky_packages, trees, tmp_path, tree, family, yaml, layers
):
    repo = trees[tree]
    pristine = snapshot(repo)
    model, stock = _inject_every_operator(repo, wky_packages, family, yaml, layers, tmp_path)
    assert _img(stock) == 64
    (theirs,) = _own_model(repo, [model], 64, tmp_path)
    _check_every_operator(theirs, model)
    _revert(repo, pristine)


@functools.lru_cache(maxsize=8)
def _simulated(text: str):
    """The parsed yaml and its simulation (pure: a result text is built and its promise read once)."""
    parsed = parse_model_yaml(text)
    return parsed, simulate(parsed.logical_rows(), geometry_of(parsed.values))


@functools.lru_cache(maxsize=64)
def _rows(text: str) -> int:
    return len(parse_model_yaml(text).layers)


def result_c2(text: str, layer: int) -> int | None:
    return _simulated(text)[1].shapes[layer].c2


def _built_channels(text: str, layer: int, img: int) -> int | None:
    """The channels of one layer's output when the built-in builder's model runs forward. Built on the meta
    device, then given zeroed CPU memory: the same modules and forward, without drawing the random weights
    of the largest YOLOv7 graphs (a second each); the channels asked for do not depend on them."""
    import torch

    with torch.device("meta"):
        model = build_of(*_simulated(text))
    model = model.to_empty(device="cpu")
    seen: list[int] = []
    model.model[layer].register_forward_hook(lambda _m, _i, out: seen.append(out.shape[1]))
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
        model(torch.zeros(1, 3, img, img))
    return seen[0]


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("family", ["YOLOv7", "YOLOv9"])
def test_stock_yamls_layer_by_layer_build_or_are_refused_in_one_line(wky_packages, family, exhaustive):
    """Every layer (default: a fixed-seed sample), replaced and inserted after: the result builds with the
    built-in builder (the own Model's parameters, as above) with the channels apply promised, or apply
    refuses it in one line naming the layer."""
    yamls = [(p, p.read_text(encoding="utf-8")) for p in _yamls(wky_packages)[family]]
    outcomes = {"ok": 0, "refused": 0}
    ops = list(OPERATORS.values())
    cases = sweep_cases(yamls, _rows, 2, family, exhaustive)
    for number, (path, text, index, mode) in enumerate(cases):
        if not exhaustive and number % 32:
            continue  # building is the slow part: one case in 32 by default
        options = ApplyOptions(ops[number % len(ops)], insert=bool(mode))
        try:
            result = apply_operator(text, str(index), options, str(path))
        except YolopatchError as exc:
            assert f"layer {index} (" in str(exc) and "\n" not in str(exc), str(exc)
            outcomes["refused"] += 1
            continue
        at = index + 1 if mode else index
        assert _built_channels(result.text, at, _img(path)) == result_c2(result.text, at), (
            path.name,
            index,
            mode,
        )
        outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes["refused"] > 0, outcomes


@pytest.mark.parametrize(
    ("tree", "file", "cls", "stock", "how"),
    [
        pytest.param(
            "yolov7-checkout",
            "se_attention.py",
            "SEAttention",
            "training/yolov7-tiny.yaml",
            ("7", "--insert"),
            id="yolov7-keep",
        ),
        pytest.param(
            "yolov7-checkout",
            "v5_import.py",
            "ConvGateV5",
            "training/yolov7-tiny.yaml",
            ("7",),
            id="yolov7-conv",
        ),
        pytest.param(
            "yolo9", "v5_import.py", "ConvGateV5", "yolov9-c.yaml", ("9", "--insert"), id="yolo9-package-conv"
        ),
    ],
)
def test_your_own_module_works_on_yolov7_and_yolov9_as_on_yolov5(
    wky_packages, trees, tmp_path, tree, file, cls, stock, how
):
    """ops add (probed against the checkout), apply, inject --for, check with the built-in builder and with
    the checkout's own Model: the same parameters; revert leaves the checkout as it was. A module built on
    the checkout's Conv imports it from the package in the pip layout (yolo9.models.common)."""
    from helpers import FIXTURES

    repo = trees[tree]
    pristine = snapshot(repo)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(FIXTURES / "user_modules" / file, work / file)
    family = "YOLOv9" if tree == "yolo9" else "YOLOv7"
    source = next(p for p in _yamls(wky_packages)[family] if _name(p) == stock)
    shutil.copy(source, work / "model.yaml")
    added = run_cli("ops", "add", f"{file}:{cls}", "--repo", str(repo), cwd=work, env=CHILD)
    assert added.returncode == 0, added.stderr
    at, *insert = how
    applied = run_cli(
        "apply", "model.yaml", "--layers", at, "--op", cls, *insert, "-o", "mine.yaml", cwd=work
    )
    assert applied.returncode == 0, applied.stderr
    injected = run_cli("inject", str(repo), "--for", "mine.yaml", cwd=work)
    assert injected.returncode == 0, injected.stderr
    own = run_cli("check", "mine.yaml", "--repo", str(repo), "--img", "64", "--json", cwd=work, env=CHILD)
    theirs = json.loads(own.stdout)["model"]
    assert cls in {layer["module"] for layer in theirs["layers"]}
    builtin = run_cli("check", "mine.yaml", "--img", "64", "--json", cwd=work, env=CHILD)
    if file == "v5_import.py":  # built on the checkout's Conv: only the checkout's own Model has it
        assert builtin.returncode == 1 and "--repo PATH/TO/checkout" in builtin.stderr
    else:
        ours = json.loads(builtin.stdout)["model"]
        assert ours["params"] == theirs["params"] and f"{ours['params']} parameters" in theirs["reference"]
    if file == "v5_import.py" and tree == "yolo9":
        copied = (repo / "models" / "yolopatch_v5_import.py").read_text(encoding="utf-8")
        assert "from yolo9.models.common import Conv" in copied
    assert run_cli("inject", str(repo), "--revert", cwd=work).returncode == 0
    assert snapshot(repo) == pristine


@pytest.mark.exhaustive
@pytest.mark.parametrize("family", ["YOLOv7", "YOLOv9"])
def test_sampled_layers_build_with_the_familys_own_model_at_batch_2(wky_packages, trees, tmp_path, family):
    """A fixed-seed sample of (yaml, layer, replace or insert, operator), built by the family's own Model
    (all six operators injected) at 2x3x128x128, forward and backward: the channels apply promised."""
    repo = trees["yolo9" if family == "YOLOv9" else "yolov7"]
    assert run_cli("inject", str(repo), "--op", ALL).returncode == 0
    ops, generator = list(OPERATORS.values()), random.Random(family)
    cases = []
    for path in _yamls(wky_packages)[family]:
        text = path.read_text(encoding="utf-8")
        for index in range(len(parse_model_yaml(text).layers)):
            for insert in (False, True):
                op = ops[generator.randrange(len(ops))]
                if generator.random() > 0.04:
                    continue
                try:
                    result = apply_operator(text, str(index), ApplyOptions(op, insert=insert), str(path))
                except YolopatchError:
                    continue
                variant = tmp_path / f"{path.parent.name}-{path.stem}-{index}-{int(insert)}-{op.name}.yaml"
                variant.write_text(result.text, encoding="utf-8")
                cases.append((variant, index + insert, result_c2(result.text, index + insert)))
    assert len(cases) > 20
    for start in range(0, len(cases), 12):
        chunk = cases[start : start + 12]
        paths = [variant for variant, _, _ in chunk]
        result = run_cli(
            "check",
            *map(str, paths),
            "--repo",
            str(repo),
            "--img",
            "128",
            "--batch",
            "2",
            "--json",
            env=CHILD,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        for (variant, at, promised), report in zip(
            chunk, data["models"] if len(chunk) > 1 else [data["model"]], strict=True
        ):
            assert _channels(report["layers"][at]["output"]) == promised, variant.name
