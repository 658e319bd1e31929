"""The model yamls shipped in real yolov5 wheels, layer by layer, both modes: success or a clear refusal.

Each distinct file text is swept in the first release that ships it; the default run edits a fixed-seed
sample of its (layer, mode) cases, `-m exhaustive` every one.
"""

from __future__ import annotations

import pytest
import yaml
from helpers import EXHAUSTIVE, YOLOV5_VERSIONS, check_result, first_shipped, sweep_cases

from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml

MODES = (ApplyOptions(), ApplyOptions(insert=True))


def _official_yamls(yolov5_packages):
    return first_shipped(
        {
            version: [
                p for p in (yolov5_packages[version] / "models").rglob("*.yaml") if p.name != "anchors.yaml"
            ]
            for version in YOLOV5_VERSIONS
        }
    )


def _rows(text: str) -> int:
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:  # a few official files are broken (hub/yolov5-bifpn.yaml in 6.0.x)
        return 0
    return len(parse_model_yaml(text).layers)


@pytest.mark.parametrize("exhaustive", EXHAUSTIVE)
@pytest.mark.parametrize("version", YOLOV5_VERSIONS)
def test_official_yamls_layer_by_layer(yolov5_packages, version, exhaustive):
    yamls = _official_yamls(yolov5_packages)[version]
    if not yamls:
        pytest.skip(f"{version} ships no yaml that an earlier release does not")
    for path, text in yamls:
        if _rows(text) == 0:
            with pytest.raises(YolopatchError, match=r":\d+:\d+: not valid YAML"):
                apply_operator(text, "1", ApplyOptions(), str(path))
    outcomes = {"ok": 0, "refused": 0}
    for path, text, index, mode in sweep_cases(yamls, _rows, len(MODES), version, exhaustive):
        options = MODES[mode]
        try:
            result = apply_operator(text, str(index), options, str(path))
        except YolopatchError as exc:
            message = str(exc)
            assert f"layer {index} (" in message and "cannot" in message and "\n" not in message
            outcomes["refused"] += 1
            continue
        check_result(text, result.text, options)
        outcomes["ok"] += 1
    assert outcomes["ok"] > outcomes["refused"] > 0, outcomes


def test_every_release_ships_its_yamls(yolov5_packages):
    """The sweep covers every release: each ships at least a dozen model yamls."""
    for version in YOLOV5_VERSIONS:
        files = [p for p in (yolov5_packages[version] / "models").rglob("*.yaml") if p.name != "anchors.yaml"]
        assert len(files) >= 12, version


def test_official_yolov5s_accepts_every_conv_and_c3(yolov5_packages):
    text = (yolov5_packages["7.0.14"] / "models" / "yolov5s.yaml").read_text(encoding="utf-8")
    result = apply_operator(text, "1-23", ApplyOptions())
    assert [c.index for c in result.changes] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 17, 18, 20, 21, 23]
