"""Test helpers: fixture paths, byte transforms, an independent graph reader, the CLI, real YOLOv5 wheels."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml
from typer.testing import CliRunner

FIXTURES = Path(__file__).parent / "fixtures"
ROOT = Path(__file__).parent.parent
CACHE = Path(os.environ.get("YOLOPATCH_TEST_CACHE", ROOT / ".cache"))

# Versions that cover the file styles: v4 (one-name-per-line list, Focus), v5 (list), v6.0 (list, SPPF),
# v6.1 (tuple), v6.2 (one-line set), v7.0 (set, segment models). (5.0.10 has metadata new pip refuses.)
YOLOV5_VERSIONS = ("4.0.14", "5.0.0", "6.0.7", "6.1.8", "6.2.3", "7.0.14")
# ultralytics: the first 8.1, 8.2 and 8.3 releases, the last 8.3, and an 8.4 (pure-Python wheels, --no-deps).
ULTRALYTICS_VERSIONS = ("8.1.0", "8.2.0", "8.3.0", "8.3.253", "8.4.190")
STUBS = Path(__file__).parent / "stubs"


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_bytes().decode("utf-8")


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


def run_cli(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The command line, in-process (typer's CliRunner): exit code, stdout and stderr as a process gives them.

    Exceptions other than exits propagate, so a traceback fails the test instead of hiding in stderr.
    """
    from yolopatch.cli import app

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


def _unpacked_wheel(name: str, version: str) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    unpacked = CACHE / f"{name}-{version}"
    if not (unpacked / name).is_dir():
        wheels = list(CACHE.glob(f"{name}-{version}-*.whl"))
        if not wheels:
            command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"{name}=={version}"]
            subprocess.run([*command, "-d", str(CACHE)], check=True)
            wheels = list(CACHE.glob(f"{name}-{version}-*.whl"))
        with zipfile.ZipFile(wheels[0]) as archive:
            archive.extractall(unpacked)
    return unpacked
