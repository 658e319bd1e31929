"""apply and layers on ultralytics model yamls: block rows, `scales:`, ultralytics' modules, every scale.

Our own fixture in their shape for exact expectations; the stock yamls of real ultralytics wheels for
coverage; ultralytics' own DetectionModel, at every scale, for the channels `apply` promises.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import (
    EXHAUSTIVE,
    STUBS,
    TRANSFORMS,
    ULTRALYTICS_VERSIONS,
    changed_lines,
    check_result,
    contract_inserted,
    first_shipped,
    fixture_text,
    graph,
    run_cli,
    sweep_cases,
)

from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.operators.registry import get_operator

SCALES = fixture_text("ultralytics/scales.yaml")
SE, INVOLUTION = get_operator("se"), get_operator("involution")

CASES = [
    pytest.param(
        "2",
        ApplyOptions(SE, insert=True),
        [
            "+  - [-1, 1, SE, [256]] # 3",
            "-  - [-1, 1, ADown, [256]] # 3-P3/8",
            "+  - [-1, 1, ADown, [256]] # 4-P3/8",
        ],
        id="insert-a-block-row-with-the-neighbours-spacing",
    ),
    pytest.param(
        "3",
        ApplyOptions(INVOLUTION),
        ["-  - [-1, 1, ADown, [256]] # 3-P3/8", "+  - [-1, 1, Involution, [256, 7, 2]] # 3-P3/8"],
        id="replace-adown-keeps-its-stride-2",
    ),
    pytest.param(
        "7",
        ApplyOptions(SE),
        ["-  - [-1, 2, C2PSA, [512]] # 7", "+  - [-1, 1, SE, [512]] # 7"],
        id="replace-c2psa-that-keeps-channels",
    ),
    pytest.param(
        "4",
        ApplyOptions(INVOLUTION),
        ["-  - [-1, 2, C2f, [512, True]]", "+  - [-1, 1, Involution, [512, 7, 1]]"],
        id="replace-c2f",
    ),
    pytest.param(
        "9",
        ApplyOptions(SE, insert=True, scale="n"),
        ["+  - [-1, 1, SE, [1024]] # 10", "+  - [[11, 14], 1, Detect, [nc]] # Detect(P3, P4)"],
        id="scale-n-only-where-m-has-no-argument",
    ),
]


@pytest.mark.parametrize("transform", sorted(TRANSFORMS))
@pytest.mark.parametrize(("layers", "options", "expected"), CASES)
def test_apply_changes_exactly_these_lines(layers, options, expected, transform):
    text = TRANSFORMS[transform](SCALES)
    result = apply_operator(text, layers, options)
    assert set(expected) <= set(changed_lines(text, result.text))
    assert apply_operator(result.text, layers, options).text == result.text
    check_result(text, result.text, options)


REFUSALS = [
    pytest.param(
        "9",
        ApplyOptions(SE, insert=True),
        "at scale m: no SE argument gives exactly 1024 channels at width 1 and max_channels 512 "
        "(--scale n writes for one of n, s)",
        id="clamp-at-one-scale",
    ),
    pytest.param(
        "2",
        ApplyOptions(SE),
        "SE keeps channels and size; this layer changes 32 to 64 channels",
        id="keeps-channels",
    ),
    pytest.param(
        "9", ApplyOptions(), "it takes several inputs ([-1, 4]); an Involution takes one", id="concat"
    ),
    pytest.param("14", ApplyOptions(SE, insert=True), "Detect is the model's output", id="after-the-head"),
]


@pytest.mark.parametrize(("layers", "options", "message"), REFUSALS)
def test_refusals_say_why_at_which_scale(layers, options, message):
    with pytest.raises(YolopatchError) as info:
        apply_operator(SCALES, layers, options, "scales.yaml")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_unknown_scale_is_a_usage_error_listing_the_scales():
    with pytest.raises(OptionError, match="defines scales n, s, m"):
        apply_operator(SCALES, "2", ApplyOptions(insert=True, scale="x"))


def test_layers_shows_channels_at_every_scale(tmp_path):
    path = tmp_path / "scales.yaml"
    path.write_text(SCALES, encoding="utf-8")
    result = run_cli("layers", str(path))
    header = next(line for line in result.stdout.splitlines() if "out ch" in line or "┃ #" in line)
    assert result.returncode == 0 and "┃" in header
    row = next(line for line in result.stdout.splitlines() if line.startswith("│  9 "))
    assert [c.strip() for c in row.strip("│").split("│")][-4:] == ["256", "512", "1024", "8"]
    one = run_cli("layers", str(path), "--scale", "m")
    row = next(line for line in one.stdout.splitlines() if line.startswith("│  9 "))
    assert [c.strip() for c in row.strip("│").split("│")][-2:] == ["1024", "8"]


def _stock_yamls(package: Path) -> list[Path]:
    return sorted(
        p for p in (package / "ultralytics" / "cfg" / "models").rglob("*.yaml") if "-cls" not in p.name
    )


MODES = (ApplyOptions(), ApplyOptions(SE, insert=True))


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("version", ULTRALYTICS_VERSIONS)
def test_stock_yamls_layer_by_layer(ultralytics_packages, version, exhaustive):
    """Replace and insert at the rows of every stock detect/seg/pose/obb yaml (each distinct text in the first
    release that ships it; a fixed-seed sample of the rows by default, every row with -m exhaustive): a
    byte-faithful edit that keeps the graph (checked with PyYAML), or a one-line refusal."""
    yamls = first_shipped({v: _stock_yamls(ultralytics_packages[v]) for v in ULTRALYTICS_VERSIONS})[version]
    if not yamls:
        pytest.skip(f"{version} ships no stock yaml that an earlier release does not")
    outcomes = {"ok": 0, "refused": 0}
    for path, text, index, mode in sweep_cases(
        yamls, lambda t: len(graph(t)), len(MODES), version, exhaustive
    ):
        options = MODES[mode]
        try:
            result = apply_operator(text, str(index), options, str(path))
        except YolopatchError as exc:
            assert f"layer {index} (" in str(exc) and "cannot" in str(exc) and "\n" not in str(exc)
            outcomes["refused"] += 1
            continue
        if options.insert:
            contracted, inserted = contract_inserted(graph(text), graph(result.text), "SE")
            assert contracted == graph(text) and len(inserted) == 1, path
        check_result(text, result.text, options)
        outcomes["ok"] += 1
    assert outcomes["ok"] > outcomes["refused"] > 0, outcomes


# the stock yamls built with each release's own parse_model, in one child per release
BUILDS = {
    "8.4.190": ["v8/yolov8.yaml", "11/yolo11.yaml", "12/yolo12.yaml", "26/yolo26.yaml"],
    "8.1.0": ["v8/yolov8.yaml"],
}


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("version", BUILDS)
def test_ultralytics_own_model_gets_the_promised_channels_at_every_scale(
    ultralytics_packages, tmp_path, version, exhaustive
):
    """Insert after every row; ultralytics' own parse_model builds each result at each scale (channels, no
    weights), and the inserted layer (built as a 1x1 Conv with the same argument, a module ultralytics
    registers) takes and gives exactly the channels of the row before it. The default run builds each row
    at two scales in turn (every scale for some rows); -m exhaustive at every scale."""
    package = ultralytics_packages[version]
    paths = [package / "ultralytics" / "cfg" / "models" / name for name in BUILDS[version]]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(package), str(STUBS), str(Path(__file__).parent)]),
        "YOLO_OFFLINE": "True",
        "YOLO_AUTOINSTALL": "False",
        "YOLO_CONFIG_DIR": str(tmp_path),
        "MPLCONFIGDIR": str(tmp_path),
    }
    probe = [
        sys.executable,
        "-m",
        "ultralytics_probe",
        *(["--every-scale"] if exhaustive else []),
        *map(str, paths),
    ]
    process = subprocess.run(probe, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert process.returncode == 0, process.stderr[-2000:]
    reports = json.loads(process.stdout.strip().splitlines()[-1])
    for path in paths:
        report = reports[str(path)]
        assert report["version"] == version, path
        assert report["wrong"] == [] and report["failed"] == [], (path, report)
        doc = yaml.safe_load(path.read_text())
        rows = len(doc["backbone"]) + len(doc["head"])
        assert report["built"] >= (len(doc["scales"]) if exhaustive else 2) * (rows - 6), (path, report)
        assert report["refused"] <= 6, (path, report)
