"""Shared fixtures; helpers live in helpers.py."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from forkserver import ForkServer, launcher
from helpers import (
    ULTRALYTICS_SINGLE,
    ULTRALYTICS_VERSIONS,
    YOLO9_VERSION,
    YOLOV5_VERSIONS,
    YOLOV7_EASY_VERSION,
    YOLOV7_VERSION,
    YOLOV7_YAMLS_VERSION,
    copy_checkout,
    download_archives,
    download_pytorchyolo,
    download_ultralytics,
    download_yolo9,
    download_yolov5,
    download_yolov7,
    download_yolov7_checkout,
    download_yolov7_easy,
)
from hypothesis import settings

# CI runs the same examples every time: a red CI names a real regression, not a new random draw
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


def _downloaded(download: Callable[[str], Path], versions: Sequence[str], what: str) -> dict[str, Path]:
    """version -> unpacked wheel; skips when PyPI cannot be reached, except in CI, which reaches it. The
    versions download side by side (a pip process each, mostly waiting on the network: from a fresh clone,
    the slowest of them instead of their sum)."""
    try:
        with ThreadPoolExecutor(max_workers=len(versions)) as pool:
            return dict(zip(versions, pool.map(download, versions), strict=True))
    except (subprocess.CalledProcessError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot download {what} wheels: {exc}")


# fixture name -> the downloads it needs: (function, argument or None)
_DOWNLOADS: dict[str, list[tuple[Callable[..., Path], str | None]]] = {
    "yolov5_packages": [(download_yolov5, v) for v in YOLOV5_VERSIONS],
    "ultralytics_packages": [(download_ultralytics, v) for v in (*ULTRALYTICS_VERSIONS, *ULTRALYTICS_SINGLE)],
    "wky_packages": [
        (download_yolo9, None),
        (download_yolov7, None),
        (download_yolov7_easy, None),
        (download_yolov7_checkout, None),
    ],
    "pytorchyolo_packages": [(download_pytorchyolo, None)],
}
# fixture name -> the archives (name, version) those downloads unpack: fetched first, in one pip run
_ARCHIVES: dict[str, list[tuple[str, str]]] = {
    "yolov5_packages": [("yolov5", v) for v in YOLOV5_VERSIONS],
    "ultralytics_packages": [("ultralytics", v) for v in (*ULTRALYTICS_VERSIONS, *ULTRALYTICS_SINGLE)],
    "wky_packages": [
        ("yolo9", YOLO9_VERSION),
        ("yolov7detect", YOLOV7_VERSION),
        ("yolov7-easy", YOLOV7_EASY_VERSION),
        ("yolov7-wky-package", YOLOV7_YAMLS_VERSION),
    ],
    "pytorchyolo_packages": [("pytorchyolo", "1.8.0")],
}


def _prefetch(fixtures: set[str]) -> None:
    """From a fresh clone (an empty cache), fetch every archive the collected tests need in one pip run, then
    unpack each, in the background while the first tests (those that need none) run: the real tests then
    find them unpacked (or wait on the package's lock for the last of them) instead of each fixture
    downloading in turn. Each pytest-xdist worker starts its own; the locks make one of them do each step.
    Errors are left to the fixtures, which raise or skip them where a test asks."""
    names = sorted(fixtures)
    wanted = [download for name in names for download in _DOWNLOADS[name]]
    if not wanted:
        return

    def fetch() -> None:
        with contextlib.suppress(Exception):
            download_archives([pair for name in names for pair in _ARCHIVES[name]])
        for function, argument in wanted:
            with contextlib.suppress(Exception):
                function() if argument is None else function(argument)

    threading.Thread(target=fetch, name="yolopatch-prefetch", daemon=True).start()


@pytest.fixture(scope="session")
def yolov5_packages() -> dict[str, Path]:
    """version -> the unpacked `yolov5` package folder (holds models/)."""
    return _downloaded(download_yolov5, YOLOV5_VERSIONS, "yolov5")


@pytest.fixture(scope="session")
def ultralytics_packages() -> dict[str, Path]:
    """version -> a folder holding that release's `ultralytics` package."""
    return _downloaded(download_ultralytics, ULTRALYTICS_VERSIONS, "ultralytics")


@pytest.fixture(scope="session")
def wky_packages() -> dict[str, Path]:
    """WongKinYiu's YOLOv7 and YOLOv9 as PyPI packages them: "yolo9" (the yolo9 package folder, with its
    detect yamls), "yolov7" and "yolov7-easy" (the yolov7 package folder of yolov7detect, and of yolov7-easy,
    whose files end lines with CRLF), "yolov7-checkout" (the upstream layout with cfg/training and
    cfg/deploy)."""
    downloads = {
        "yolo9": download_yolo9,
        "yolov7": download_yolov7,
        "yolov7-easy": download_yolov7_easy,
        "yolov7-checkout": download_yolov7_checkout,
    }
    return _downloaded(lambda name: downloads[name](), list(downloads), "WongKinYiu packages")


@pytest.fixture(scope="session")
def pytorchyolo_packages() -> dict[str, Path]:
    """version -> a folder holding that release's `pytorchyolo` package (it builds darknet cfgs)."""
    return _downloaded(download_pytorchyolo, ["1.8.0"], "pytorchyolo")


@pytest.fixture
def checkout(tmp_path: Path) -> Callable[[str], Path]:
    """checkout(NAME): a copy of our stand-in checkout tests/fixtures/checkouts/NAME, at tmp_path/NAME."""
    return lambda name: copy_checkout(name, tmp_path / name)


def pytest_configure(config: pytest.Config) -> None:
    """One torch thread per pytest-xdist worker (and its children): two workers on two cores, not four
    threads fighting over them.

    Bytecode caches on for this run and its children: where the environment turns them off
    (PYTHONDONTWRITEBYTECODE), each of the run's hundred or so child processes compiled yolopatch and the
    family's sources anew (about 0.45 s of a 3 s ultralytics child; test_ultralytics_real took 22% more CPU).
    The caches land in the ignored __pycache__ folders beside the sources: ours, the test cache's unpacked
    wheels and the temporary copies (the tests' snapshots leave __pycache__ out)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    if hasattr(os, "fork") and not os.environ.get("YOLOPATCH_TEST_EXEC"):
        _start_children_from_a_fork_server()


_FORK_SERVER = ForkServer()


def _start_children_from_a_fork_server() -> None:
    """yolopatch's children of this Python fork from a server that imported torch once (tests/forkserver.py);
    YOLOPATCH_TEST_EXEC=1 runs them with exec, as users' runs do."""
    import yolopatch.child

    yolopatch.child._launch = launcher(_FORK_SERVER, yolopatch.child._launch)


def pytest_unconfigure(config: pytest.Config) -> None:
    _FORK_SERVER.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that needs the downloaded wheels carries the `real` marker (`-m "not real"` skips them);
    `exhaustive` tests run only when a `-m` expression names them (`-m exhaustive`)."""
    for item in items:
        if set(_DOWNLOADS) & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)
    if "exhaustive" not in (config.option.markexpr or ""):
        left_out = [item for item in items if item.get_closest_marker("exhaustive")]
        if left_out:
            config.hook.pytest_deselected(items=left_out)
            items[:] = [item for item in items if not item.get_closest_marker("exhaustive")]


def pytest_collection_finish(session: pytest.Session) -> None:
    """The tests are chosen (-m, -k and the exhaustive rule applied): fetch what they will need."""
    if not session.config.option.collectonly:
        used = (set(getattr(item, "fixturenames", ())) for item in session.items)
        _prefetch({name for names in used for name in set(_DOWNLOADS) & names})
