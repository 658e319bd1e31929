"""One fixture provider per family, for the target contract (test_contract.py): a yaml of the family, a
stand-in checkout or package folder of its own built from tests/fixtures, how its checkpoints pickle our
classes, and where its real code is (a session fixture of conftest.py). A new family adds its Provider here,
under the target's name, and the contract tests it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from helpers import (
    EXAMPLE,
    FIXTURES,
    STUBS,
    ULTRALYTICS_VERSIONS,
    YOLOV5_VERSIONS,
    copy_checkout,
    fixture_text,
    make_package,
)

from yolopatch.targets.base import Target


@dataclass(frozen=True)
class Provider:
    yaml: str  # a model yaml of the family
    layer: str  # a layer of `yaml` that Involution can replace and an operator be inserted after
    make: Callable[[Path], Path]  # writes our stand-in checkout at a folder (which it returns)
    places: tuple[str, ...]  # the folders of that checkout a user may name, relative to it ("": itself)
    pickles_as: str  # the module the family's trained checkpoints name our classes by
    real: str  # the session fixture of conftest.py that holds the family's real releases
    # copies one release from that fixture's value under a folder: the folder inject and `check --repo` take
    release: Callable[[dict[str, Path], Path], Path]
    # a family without a built-in builder: the parameters its own model class builds from (release, yaml)
    own_params: Callable[[Path, Path], int] | None = None
    # the built-in operators its code refuses (their darknet forms need layers and activations it lacks)
    refuses: tuple[str, ...] = ()


def _copy(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("__pycache__", "*.dist-info", "*.pt"))
    return folder


def _ultralytics_checkout(packages: dict[str, Path], folder: Path) -> Path:
    """The newest release as a checkout: a folder holding the package."""
    _copy(packages[ULTRALYTICS_VERSIONS[-1]] / "ultralytics", folder / "checkout" / "ultralytics")
    return folder / "checkout"


_ULTRALYTICS_PARAMS = """
import sys
from ultralytics.nn.tasks import DetectionModel
print(sum(p.numel() for p in DetectionModel(sys.argv[1], verbose=False).parameters()))
"""


def _ultralytics_params(release: Path, yaml: Path) -> int:
    """ultralytics' own DetectionModel of the yaml, built in a child that imports the release."""
    settings = yaml.parent / "settings"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(release), str(STUBS)]),
        "YOLO_CONFIG_DIR": str(settings),
        "MPLCONFIGDIR": str(settings),
        "YOLO_OFFLINE": "True",
    }
    process = subprocess.run(
        [sys.executable, "-c", _ULTRALYTICS_PARAMS, str(yaml)],
        capture_output=True,
        text=True,
        cwd=yaml.parent,
        env=env,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    return int(process.stdout.split()[-1])


PROVIDERS = {
    "YOLOv5": Provider(
        yaml=EXAMPLE,
        layer="9",
        make=lambda folder: copy_checkout("master", folder),
        places=("", "models"),
        pickles_as="models.common",
        real="yolov5_packages",
        # the pip package's folder keeps its name: its yolo.py imports yolov5.models
        release=lambda packages, folder: _copy(packages[YOLOV5_VERSIONS[-1]], folder / "site" / "yolov5"),
    ),
    "ultralytics": Provider(
        yaml=fixture_text("ultralytics/scales.yaml"),
        layer="2",
        make=lambda folder: make_package(folder).root.parent,
        places=("", "ultralytics"),
        pickles_as="ultralytics.nn.modules.yolopatch",
        real="ultralytics_packages",
        release=_ultralytics_checkout,
        own_params=_ultralytics_params,
    ),
    "YOLOv7": Provider(
        yaml=fixture_text("wky/yolov7-shaped.yaml"),
        layer="25",
        make=lambda folder: copy_checkout("yolov7", folder),
        places=("", "models"),
        pickles_as="models.common",
        real="wky_packages",
        release=lambda packages, folder: _copy(packages["yolov7"], folder / "site" / "yolov7"),
    ),
    # builds darknet cfgs (its `yaml` is a cfg): our stand-in package in its shape; the real one from PyPI
    "pytorchyolo": Provider(
        yaml=fixture_text("darknet/tiny4.cfg"),
        layer="7",
        make=lambda folder: _copy(FIXTURES / "darknet" / "pytorchyolo", folder),
        places=("", "pytorchyolo"),
        pickles_as="pytorchyolo.models",
        real="pytorchyolo_packages",
        release=lambda packages, folder: _copy(
            packages["1.8.0"] / "pytorchyolo", folder / "site" / "pytorchyolo"
        ),
    ),
    # WongKinYiu's PyTorch_YOLOv4 (GPL, never committed): our stand-in checkout in its shape, also as the
    # "release" (no real one is downloaded)
    "PyTorch_YOLOv4": Provider(
        yaml=fixture_text("darknet/tiny4.cfg"),
        layer="7",
        make=lambda folder: _copy(FIXTURES / "darknet" / "pytorch_yolov4", folder),
        places=("", "models"),
        pickles_as="models.models",
        real="pytorchyolo_packages",
        release=lambda packages, folder: _copy(
            FIXTURES / "darknet" / "pytorch_yolov4", folder / "PyTorch_YOLOv4"
        ),
    ),
    "YOLOv9": Provider(
        yaml=fixture_text("wky/yolov9-shaped.yaml"),
        layer="9",
        make=lambda folder: copy_checkout("yolov9", folder),
        places=("", "models"),
        pickles_as="models.common",
        real="wky_packages",
        release=lambda packages, folder: _copy(packages["yolo9"], folder / "site" / "yolo9"),
    ),
}


# Further layouts a target handles besides its own provider's, each tested by the contract as that target:
# layout -> (the target's name, its provider)
LAYOUTS = {
    # the ultralytics/yolov3 archive (GPL, never committed): a root models.py, as PyTorch_YOLOv4's older
    # checkouts; our stand-in in its shape, also as the "release". It builds no native SE or SAM.
    "yolov3-archive": (
        "PyTorch_YOLOv4",
        Provider(
            yaml=fixture_text("darknet/archive3.cfg"),
            layer="4",
            make=lambda folder: _copy(FIXTURES / "darknet" / "yolov3_archive", folder),
            places=("",),
            pickles_as="models",
            real="pytorchyolo_packages",
            release=lambda packages, folder: _copy(
                FIXTURES / "darknet" / "yolov3_archive", folder / "yolov3"
            ),
            refuses=("SE", "SAM"),
        ),
    ),
}


def provider_for(target: Target) -> Provider:
    if target.name not in PROVIDERS:
        raise LookupError(f"no provider for the target {target.name}: add one to {__file__}")
    return PROVIDERS[target.name]
