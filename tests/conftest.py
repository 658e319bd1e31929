"""Shared fixtures; helpers live in helpers.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from helpers import ULTRALYTICS_VERSIONS, YOLOV5_VERSIONS, download_ultralytics, download_yolov5


def _downloaded(download: Callable[[str], Path], versions: Sequence[str], what: str) -> dict[str, Path]:
    """version -> unpacked wheel; skips when PyPI cannot be reached, except in CI, which reaches it."""
    try:
        return {version: download(version) for version in versions}
    except (subprocess.CalledProcessError, OSError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"cannot download {what} wheels: {exc}")


@pytest.fixture(scope="session")
def yolov5_packages() -> dict[str, Path]:
    """version -> the unpacked `yolov5` package folder (holds models/)."""
    return _downloaded(download_yolov5, YOLOV5_VERSIONS, "yolov5")


@pytest.fixture(scope="session")
def ultralytics_packages() -> dict[str, Path]:
    """version -> a folder holding that release's `ultralytics` package."""
    return _downloaded(download_ultralytics, ULTRALYTICS_VERSIONS, "ultralytics")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the downloaded wheels carries the `real` marker (`-m "not real"` skips them)."""
    for item in items:
        if {"yolov5_packages", "ultralytics_packages"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.real)
