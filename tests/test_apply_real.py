"""Every model yaml shipped in real yolov5 wheels, every layer, both modes: success or a clear refusal."""

from __future__ import annotations

import pytest
import yaml
from helpers import YOLOV5_VERSIONS
from test_apply_properties import check_result

from yolopatch.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.modelyaml import parse_model_yaml


@pytest.mark.parametrize("version", YOLOV5_VERSIONS)
def test_every_layer_of_every_official_yaml(yolov5_packages, version):
    files = sorted(
        p for p in (yolov5_packages[version] / "models").rglob("*.yaml") if p.name != "anchors.yaml"
    )
    assert len(files) >= 12
    outcomes = {"ok": 0, "refused": 0}
    for path in files:
        text = path.read_bytes().decode("utf-8")
        try:
            yaml.safe_load(text)
        except yaml.YAMLError:  # a few official files are broken (hub/yolov5-bifpn.yaml in 6.0.x)
            with pytest.raises(YolopatchError, match=r":\d+:\d+: not valid YAML"):
                apply_operator(text, "1", ApplyOptions(), str(path))
            continue
        for index in range(len(parse_model_yaml(text, str(path)).layers)):
            for options in (ApplyOptions(), ApplyOptions(insert=True)):
                try:
                    result = apply_operator(text, str(index), options, str(path))
                except YolopatchError as exc:
                    message = str(exc)
                    assert f"layer {index} (" in message and "cannot" in message and "\n" not in message
                    outcomes["refused"] += 1
                    continue
                check_result(text, result.text, options)
                outcomes["ok"] += 1
    assert outcomes["ok"] > outcomes["refused"] > 0


def test_official_yolov5s_accepts_every_conv_and_c3(yolov5_packages):
    text = (yolov5_packages["7.0.14"] / "models" / "yolov5s.yaml").read_text(encoding="utf-8")
    result = apply_operator(text, "1-23", ApplyOptions())
    assert [c.index for c in result.changes] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13, 14, 17, 18, 20, 21, 23]
