"""Test helpers: fixture paths, byte transforms, an independent graph reader, the CLI, real YOLOv5 wheels."""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import importlib.util
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from filelock import FileLock
from typer.testing import CliRunner

from yolopatch.commands.apply import ApplyOptions

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
CACHE = Path(os.environ.get("YOLOPATCH_TEST_CACHE", ROOT / ".cache"))

# Versions that cover the file styles: v4 (one-name-per-line list, Focus), v5 (list), v6.0 (list, SPPF),
# v6.1 (tuple), v6.2 (one-line set), v7.0 (set, segment models). (5.0.10 has metadata new pip refuses.)
YOLOV5_VERSIONS = ("4.0.14", "5.0.0", "6.0.7", "6.1.8", "6.2.3", "7.0.14")
# ultralytics: the first 8.1, 8.2 and 8.3 releases, the last 8.3, and an 8.4 (pure-Python wheels, --no-deps).
ULTRALYTICS_VERSIONS = ("8.1.0", "8.2.0", "8.3.0", "8.3.253", "8.4.190")
# releases a single test reads (8.3.60: its own Index in a branch that prepends c1, c2): prefetched, not swept
ULTRALYTICS_SINGLE = ("8.3.60",)
STUBS = Path(__file__).parent / "stubs"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


EXAMPLE = (ROOT / "examples" / "yolov5s.yaml").read_text(encoding="utf-8")  # the README's yolov5s


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder`, by relative path, without Python's caches: equal snapshots, same bytes."""
    files = (p for p in sorted(folder.rglob("*")) if p.is_file())
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in files
        if "__pycache__" not in p.relative_to(folder).parts
    }


def copy_checkout(name: str, folder: Path) -> Path:
    """A copy of our stand-in checkout tests/fixtures/checkouts/NAME (a family's models/ layout) at `folder`."""
    shutil.copytree(FIXTURES / "checkouts" / name, folder)
    return folder


TRANSFORMS = {
    "lf": lambda t: t,
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "bom": lambda t: "\ufeff" + t,
    "bom-crlf": lambda t: "\ufeff" + t.replace("\n", "\r\n"),
}


@functools.lru_cache(maxsize=256)
def graph(text: str) -> list[tuple]:
    """(module, args, inputs as absolute indices) per layer, read with PyYAML, independent of yolopatch."""
    doc = yaml.load(text.lstrip("\ufeff"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    rows = doc["backbone"] + doc["head"]
    nodes = []
    for i, (f, _n, module, args) in enumerate(rows):
        sources = f if isinstance(f, list) else [f]
        nodes.append(
            (module, args, tuple("in" if i == 0 and s == -1 else s % i if s < 0 else s for s in sources))
        )
    return nodes


def contract_inserted(
    original: list[tuple], result: list[tuple], inserted_module: str = "Involution"
) -> tuple[list[tuple], list[int]]:
    """Remove inserted operator nodes from `result`, sending their consumers to their input."""
    inserted, mapping, j = [], {}, 0
    for i, node in enumerate(result):
        if j < len(original) and node[:2] == original[j][:2]:
            mapping[i] = j
            j += 1
        else:
            assert node[0] == inserted_module, f"unexpected new node {node}"
            assert len(node[2]) == 1
            inserted.append(i)

    def resolve(k):
        while k != "in" and k in inserted:
            k = result[k][2][0]
        return k if k == "in" else mapping[k]

    contracted = [
        (m, a, tuple(resolve(s) for s in srcs)) for i, (m, a, srcs) in enumerate(result) if i in mapping
    ]
    return contracted, inserted


# a layer row: flow (`  [[-1, 1, Conv, ...` / `head: [[...`) or block (`  - [-1, 1, Conv, ...`)
_ROW_LINE = re.compile(r"^\s*(\w+:\s*)?(-\s+)?\[*\s*\[\s*(-?\d+|\[)")


def check_result(original: str, result: str, options: ApplyOptions) -> None:
    """Independent of yolopatch's parser: PyYAML and difflib only."""
    old_lines, new_lines = original.splitlines(keepends=True), result.splitlines(keepends=True)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old_lines, new_lines, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            continue
        assert all(_ROW_LINE.match(line) for line in old_lines[i1:i2]), old_lines[i1:i2]
        assert all(_ROW_LINE.match(line) for line in new_lines[j1:j2]), new_lines[j1:j2]
    before, after = graph(original), graph(result)
    name = options.op.name
    if options.insert:
        contracted, inserted = contract_inserted(before, after, name)
        assert contracted == before
        for index in inserted:
            assert after[index][2] == (index - 1,), f"an inserted {name} reads the layer before it"
            args = after[index][1]
            assert args == options.op.yaml_args(args[0], 1, options.resolved)
    else:
        assert len(after) == len(before)
        for old, new in zip(before, after, strict=True):
            assert new[2] == old[2], "replacing never rewires"
            assert new == old or new[0] == name


def changed_lines(old: str, new: str) -> list[str]:
    """Removed lines as "-LINE" and added lines as "+LINE", in order (line endings dropped)."""
    a, b = old.splitlines(), new.splitlines()
    lines = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            lines += [f"-{line}" for line in a[i1:i2]] + [f"+{line}" for line in b[j1:j2]]
    return lines


# --- sweeps over the stock yamls of real releases --------------------------------------------------------

# The default run edits this share of the (file, layer, mode) cases, chosen with a fixed seed per release;
# `-m exhaustive` edits every case.
SAMPLE_SHARE = 0.1
# parametrize a sweep with this: a sampled case for the default run, an every-case one for `-m exhaustive`
EXHAUSTIVE = [
    pytest.param(False, id="sample"),
    pytest.param(True, id="every-case", marks=pytest.mark.exhaustive),
]


def release_sweep(versions: Sequence[str], sampled: Sequence[str]) -> list[Any]:
    """Every release as a case; those not in `sampled` (chosen to cover the file styles the test is about)
    run only with -m exhaustive."""
    return [pytest.param(v, id=v, marks=() if v in sampled else pytest.mark.exhaustive) for v in versions]


def first_shipped(files: Mapping[str, Iterable[Path]]) -> dict[str, list[tuple[Path, str]]]:
    """version -> the (path, text) of the yamls whose text no earlier version (in `files`' order) ships:
    an identical file is swept once, in the first release that has it."""
    seen: set[str] = set()
    result: dict[str, list[tuple[Path, str]]] = {}
    for version, paths in files.items():
        result[version] = []
        for path in sorted(paths):
            text = path.read_bytes().decode("utf-8")
            digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
            if digest not in seen:
                seen.add(digest)
                result[version].append((path, text))
    return result


def sweep_cases(
    yamls: list[tuple[Path, str]], rows: Callable[[str], int], modes: int, seed: str, exhaustive: bool
) -> list[tuple[Path, str, int, int]]:
    """(path, text, layer index, mode) for every layer and mode of `yamls`, or a fixed-seed sample of them
    that keeps at least one case of every file."""
    cases = [(path, text, i, m) for path, text in yamls for i in range(rows(text)) for m in range(modes)]
    if exhaustive:
        return cases
    generator = random.Random(seed)
    picked = set(generator.sample(range(len(cases)), round(SAMPLE_SHARE * len(cases))))
    firsts = {case[0]: i for i, case in reversed(list(enumerate(cases)))}
    picked.update(firsts.values())  # every file with a layer at least once
    return [cases[i] for i in sorted(picked)]


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command line, in-process (typer's CliRunner): exit code, stdout and stderr as a process gives them.

    Exceptions other than exits propagate, so a traceback fails the test instead of hiding in stderr.
    """
    from yolopatch.cli.main import app

    previous = Path.cwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False, prog_name="yolopatch")
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(list(args), result.exit_code, result.stdout, result.stderr)


def run_process(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`python -m yolopatch ARGS` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "yolopatch", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        cwd=cwd,
        env={**os.environ, **(env or {})},
    )


def font_home(tmp_path: Path) -> Path:
    """A home folder whose YOLOv5 settings folder holds a cached Arial.ttf, as after one online run."""
    import matplotlib

    settings = tmp_path / "home" / ".config" / "Ultralytics"
    settings.mkdir(parents=True)
    shutil.copy(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", settings / "Arial.ttf")
    return settings.parent.parent


def download_yolov5(version: str) -> Path:
    """The `yolov5` package folder of a real wheel (holds models/), downloaded once into the cache."""
    return _unpacked_wheel("yolov5", version) / "yolov5"


def download_ultralytics(version: str) -> Path:
    """A folder holding the real `ultralytics` package of that release (put it first on sys.path)."""
    return _unpacked_wheel("ultralytics", version)


# WongKinYiu's repositories as PyPI packages them (GPL-3.0: downloaded, never committed):
# yolo9 (YOLOv9's models/ and its detect yamls), yolov7detect (YOLOv7's models/, as `yolov7`, an sdist),
# yolov7-wky-package (the upstream layout: top-level models/ and cfg/ with the stock yamls), yolov7-easy
# (yolov7detect's models/ with CRLF line endings).
YOLO9_VERSION, YOLOV7_VERSION, YOLOV7_YAMLS_VERSION, YOLOV7_EASY_VERSION = (
    "1.0.18",
    "1.0.1",
    "2024.9.23.1",
    "0.0.1",
)


def download_yolo9() -> Path:
    """The `yolo9` package folder (holds models/ and models/detect/*.yaml)."""
    return _unpacked_wheel("yolo9", YOLO9_VERSION) / "yolo9"


def download_yolov7() -> Path:
    """The `yolov7` package folder of yolov7detect (holds models/; no yamls)."""
    return _unpacked_wheel("yolov7detect", YOLOV7_VERSION, "yolov7") / "yolov7"


def download_yolov7_easy() -> Path:
    """The `yolov7` package folder of yolov7-easy (CRLF files)."""
    return _unpacked_wheel("yolov7-easy", YOLOV7_EASY_VERSION, "yolov7") / "yolov7"


def download_yolov7_checkout() -> Path:
    """A folder in YOLOv7's repository layout: models/, utils/ and cfg/{training,deploy}/*.yaml."""
    return _unpacked_wheel("yolov7-wky-package", YOLOV7_YAMLS_VERSION, "models")


def download_opencv(version: str = "4.14.0.94") -> Path:
    """A folder holding OpenCV 4's `cv2` (5.x has no darknet reader): put it first on a child's PYTHONPATH."""
    return _unpacked_wheel("opencv-python-headless", version, "cv2")


def download_pytorchyolo(version: str = "1.8.0") -> Path:
    """A folder holding the `pytorchyolo` package (a PyTorch codebase that reads darknet cfgs)."""
    return _unpacked_wheel("pytorchyolo", version)


def _unpacked_wheel(name: str, version: str, inside: str | None = None) -> Path:
    """Download and unpack once (a wheel, or an sdist's one top folder); parallel workers (pytest-xdist) and
    runs share the cache: a lock per package, and the unpacked folder appears whole (renamed into place) or
    not at all. `inside`: the folder the unpacked package must hold (default: its name)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    unpacked = CACHE / f"{name}-{version}"
    with FileLock(str(CACHE / f"{name}-{version}.lock")):
        if not (unpacked / (inside or name)).is_dir():
            with FileLock(str(CACHE / "download.lock")):  # after a batch download that holds it, if one runs
                archives = _archives(name, version)
                if not archives:
                    _pip_download((name, version))
                    archives = _archives(name, version)
            staging = Path(tempfile.mkdtemp(prefix=f"{name}-{version}-", dir=CACHE))
            if archives[0].suffix == ".whl":
                with zipfile.ZipFile(archives[0]) as archive:
                    archive.extractall(staging)
                whole = staging
            else:
                with tarfile.open(archives[0]) as archive:
                    archive.extractall(staging, filter="data")
                (whole,) = staging.iterdir()  # an sdist holds one NAME-VERSION/ folder
            shutil.rmtree(unpacked, ignore_errors=True)  # a partial folder from an older, interrupted run
            whole.rename(unpacked)
            shutil.rmtree(staging, ignore_errors=True)
    return unpacked


def download_archives(pairs: Sequence[tuple[str, str]]) -> None:
    """The archives of (name, version) pairs the cache lacks, in as few `pip download` runs as pip allows
    (one version of a name per run): from a fresh clone, 6 pip starts instead of 17, about 1.5 s of CPU each.
    Holds the download lock, so a fixture that needs one of them waits instead of downloading it again; a
    run that fails leaves its packages to the fixtures, one by one."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with FileLock(str(CACHE / "download.lock")):
        missing = [(name, version) for name, version in pairs if not _archives(name, version)]
        rounds: list[list[tuple[str, str]]] = []
        for pair in missing:
            free = next((r for r in rounds if all(name != pair[0] for name, _ in r)), None)
            free.append(pair) if free is not None else rounds.append([pair])
        for batch in rounds:
            with contextlib.suppress(subprocess.CalledProcessError):
                _pip_download(*batch)


def _pip_download(*pairs: tuple[str, str]) -> None:
    """`pip download --no-deps` into the cache. pip prepares an sdist's metadata (yolov7detect, yolov7-easy):
    with this environment's setuptools where it has one (--no-build-isolation: 1.3 s instead of 3.8 s, which
    installs setuptools into a build environment from PyPI first), else, or if that fails, isolated."""
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
    command += [f"{name}=={version}" for name, version in pairs] + ["-d", str(CACHE)]
    if importlib.util.find_spec("setuptools") is not None:
        if subprocess.run([*command, "--no-build-isolation"]).returncode == 0:
            return
    subprocess.run(command, check=True)


def _archives(name: str, version: str) -> list[Path]:
    stem = name.replace("-", "_")
    found = [*CACHE.glob(f"{stem}-{version}-*.whl"), *CACHE.glob(f"{stem}-{version}.tar.gz")]
    return found + list(CACHE.glob(f"{name}-{version}.tar.gz"))


def inject_into(repo: Path, operators: Sequence[Any], force: bool = False) -> Any:
    """The inject plan for the checkout or package at `repo`, whatever its family (the registry finds it)."""
    from yolopatch.commands.inject import inject_plan
    from yolopatch.targets.registry import locate

    target, where = locate(repo)
    return inject_plan(target, where, operators, force, sys.executable)


def revert_from(repo: Path, names: Sequence[str] | None = None, force: bool = False) -> Any:
    from yolopatch.targets.registry import locate

    target, where = locate(repo)
    return target.revert(where, names, force)


# The built-in builder and the simulation are told their target; tests resolve it from the yaml, as the
# commands do.
def check_yaml(text: str, name: str, img: int, batch: int, *args, **kwargs):
    from yolopatch.build.check import check_builtin
    from yolopatch.modelyaml import parse_model_yaml
    from yolopatch.targets.registry import target_for

    target = target_for(parse_model_yaml(text, name).values)
    return check_builtin(target, text, name, img, batch, *args, **kwargs)


def geometry_of(values, scale: str = "", operators=()):
    from yolopatch.channels import geometry
    from yolopatch.targets.registry import target_for

    return geometry(values, target_for(values).rules, scale, operators)


def geometries_of(values, scale=None, operators=()):
    from yolopatch.channels import geometries
    from yolopatch.targets.registry import target_for

    return geometries(values, target_for(values).rules, scale, operators)


def build_of(parsed, simulation, *args, **kwargs):
    from yolopatch.build.builder import build_model
    from yolopatch.targets.registry import target_for

    return build_model(parsed, simulation, target_for(parsed.values).builtin(), *args, **kwargs)


# --- our stand-in ultralytics package: the places inject edits, in the shapes ultralytics has written them --

ULTRALYTICS_IMPORTS = '''"""yolopatch's own stand-in for ultralytics' nn/tasks.py: the places inject edits."""

import torch.nn as nn

from ultralytics.nn.modules import (
    C2f,
    Concat,
    Conv,
    Detect,
)
from ultralytics.utils import LOGGER
'''
_LOOP = """    for i, (f, n, m, args) in enumerate(d["backbone"] + d["head"]):
        m = globals()[m]
"""
# parse_model's body by the shape of its (c1, c2) collection
ULTRALYTICS_BODIES = {
    "tuple": _LOOP
    + "        if m in (\n            Conv,\n            C2f,\n        ):\n            c1, c2 = ch[f], args[0]\n"
    "            if m in (C2f,):\n                args.insert(2, n)\n",
    "set": _LOOP
    + "        if m in {\n            Conv,\n            C2f,\n        }:\n            c1, c2 = ch[f], args[0]\n"
    "            if m in {C2f}:\n                args.insert(2, n)\n",
    "one-line": _LOOP + "        if m in {Conv, C2f}:\n            c1, c2 = ch[f], args[0]\n",
    "frozenset": "    base_modules = frozenset(\n        {\n            Conv,\n            C2f,\n        }\n    )\n"
    "    repeat_modules = frozenset({C2f})\n" + _LOOP + "        if m in base_modules:\n"
    "            if m in repeat_modules:\n                args.insert(2, n)\n",
}
ULTRALYTICS_INIT = '''"""yolopatch's own stand-in for ultralytics' nn/modules/__init__.py."""

from .block import (
    C2f,
)
from .conv import (
    CBAM,
    Concat,
    Conv,
)
from .head import Detect

__all__ = (
    "Conv",
    "CBAM",
    "Concat",
    "C2f",
    "Detect",
)
'''
ULTRALYTICS_SIBLINGS = {
    "conv.py": "class Conv:\n    pass\n\n\nclass CBAM:\n    pass\n\n\nclass Concat:\n    pass\n",
    "block.py": "class C2f:\n    pass\n",
    "head.py": "class Detect:\n    pass\n",
}


def tasks_text(shape: str = "set", imports: str = ULTRALYTICS_IMPORTS) -> str:
    return imports + "\n\ndef parse_model(d, ch, verbose=True):\n" + ULTRALYTICS_BODIES[shape]


def make_package(root: Path, tasks: str | None = None, init: str = ULTRALYTICS_INIT) -> Any:
    """Our stand-in ultralytics (version 8.9.0) in `root`/ultralytics; `tasks`, `init`: its nn/tasks.py and
    nn/modules/__init__.py (default: the set-literal collection, a tuple `__all__`)."""
    from yolopatch.targets.ultralytics.package import Package

    modules = root / "ultralytics" / "nn" / "modules"
    modules.mkdir(parents=True)
    (root / "ultralytics" / "__init__.py").write_text('__version__ = "8.9.0"\n')
    (root / "ultralytics" / "nn" / "__init__.py").write_text("")
    (root / "ultralytics" / "nn" / "tasks.py").write_bytes((tasks or tasks_text()).encode())
    (modules / "__init__.py").write_bytes(init.encode())
    for name, text in ULTRALYTICS_SIBLINGS.items():
        (modules / name).write_text(text)
    return Package(root / "ultralytics")


# --- your own operators and trained checkpoints ------------------------------------------------------------


def user_operator(
    folder: Path, file: str, cls: str, rule: Any, roles: dict, defaults: dict | None = None
) -> Any:
    """A recorded operator (as `ops add` writes it) for a copy of a user-module fixture in `folder`/mine."""
    from user_module_cases import USER_MODULES

    from yolopatch.userop.adapter import as_operator
    from yolopatch.userop.record import UserOp
    from yolopatch.userop.source import file_digest

    path = folder / "mine" / file
    path.parent.mkdir(exist_ok=True)
    shutil.copy(USER_MODULES / file, path)
    op = UserOp(
        cls, path, cls, rule, tuple(roles), roles, defaults or {}, sha256=file_digest(path.read_bytes())
    )
    return as_operator(op)


def user_se(folder: Path) -> Any:
    """SEAttention (se_attention.py): a module that keeps its input's channels."""
    from yolopatch.userop.learn import Rule

    roles = {"channel": "c1", "reduction": "-"}
    return user_operator(folder, "se_attention.py", "SEAttention", Rule("keep"), roles, {"reduction": 16})


def user_csp(folder: Path) -> Any:
    """C2fLite (csp.py): a CSP block whose n repeats an inner block (parse_model's repeat collection)."""
    from yolopatch.userop.learn import Rule

    roles = {"c1": "c1", "c2": "c2", "n": "n", "shortcut": "-", "e": "-"}
    return user_operator(folder, "csp.py", "C2fLite", Rule("csp"), roles, {"shortcut": False, "e": 0.5})


def write_checkpoint(path: Path, module: str, name: str) -> Path:
    """A file shaped like torch.save's output for a model holding the class `module`.`name`: a zip whose
    data.pkl names the pickled class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("best/data.pkl", f"\x80\x02c{module}\n{name}\nq\x00.".encode("latin-1"))
    return path


def docs_script():  # noqa: ANN201 (a module)
    """scripts/docs.py (the docs' checks), loaded once per process."""
    if "yolopatch_docs_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("yolopatch_docs_script", ROOT / "scripts" / "docs.py")
        assert spec and spec.loader
        sys.modules[spec.name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules["yolopatch_docs_script"]
