"""Reading darknet .cfg files: sections, keys and spans byte for byte, index values relative and absolute,
and the channel and stride walk, on our own cfgs in darknet's format (tests/fixtures/darknet/)."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from helpers import FIXTURES

from yolopatch.darknet.cfg import parse_cfg
from yolopatch.darknet.graph import IMAGE, walk
from yolopatch.errors import YolopatchError

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
RES3 = (FIXTURES / "darknet" / "res3.cfg").read_bytes().decode()

ODD = """[network]
channels = 4
; a comment darknet also skips
[conv]
filters = 16 # inline
size=3
stride=2
pad=1
activation=mish

[avg]

[convolutional]
filters=8
size=1
stride=1
pad=1
activation=logistic

[scale_channels]
from = 0

[route]
layers = -1, 0 ###P6
groups=2
group_id=1

[upsample]
stride=-2

[reorg]
stride=2

[sam]
from=-6

[involution]
filters=64
stride=2
"""


# PyTorch_YOLOv4's yolov4-tiny.cfg writes its CSP stages' split as [route_lhalf] (the first half of the
# channels), its own type: our own small cfg in that shape
LHALF = """[net]
channels=3

[convolutional]
filters=32
size=3
stride=2
pad=1
activation=leaky

[route_lhalf]
layers=-1

[convolutional]
filters=16
size=3
stride=1
pad=1
activation=leaky

[route]
layers = -1,-3
"""


def _nodes(text: str):
    return [(n.index, n.kind, n.sources, n.channels, n.stride, n.head) for n in walk(parse_cfg(text, "t"))]


@pytest.mark.parametrize(
    ("text", "index", "expected"),
    [
        pytest.param(TINY4, 0, (0, "convolutional", (IMAGE,), 32, 2, False), id="first-reads-the-image"),
        pytest.param(TINY4, 3, (3, "route", (2,), 32, 4, False), id="route-groups-second-half"),
        pytest.param(TINY4, 8, (8, "route", (2, 7), 128, 4, False), id="route-relative-pair"),
        pytest.param(TINY4, 9, (9, "maxpool", (8,), 128, 8, False), id="maxpool-halves"),
        pytest.param(TINY4, 30, (30, "yolo", (29,), 255, 32, True), id="yolo-head-32"),
        pytest.param(TINY4, 34, (34, "route", (33, 23), 384, 16, False), id="route-absolute"),
        pytest.param(TINY4, 37, (37, "yolo", (36,), 255, 16, True), id="yolo-head-16"),
        pytest.param(RES3, 4, (4, "shortcut", (3, 1), 64, 2, False), id="shortcut-from-minus-3"),
        pytest.param(RES3, 18, (18, "maxpool", (17,), 256, 16, False), id="spp-maxpool-stride-1"),
        pytest.param(RES3, 23, (23, "route", (22, 20, 18, 17), 1024, 16, False), id="spp-route-four"),
        pytest.param(RES3, 30, (30, "upsample", (29,), 128, 8, False), id="upsample"),
        pytest.param(RES3, 31, (31, "route", (30, 12), 384, 8, False), id="route-inline-comment"),
        pytest.param(ODD, 0, (0, "convolutional", (IMAGE,), 16, 2, False), id="conv-alias-inline-comment"),
        pytest.param(ODD, 1, (1, "avgpool", (0,), 16, None, False), id="avgpool-to-1x1"),
        pytest.param(ODD, 3, (3, "scale_channels", (2, 0), 16, 2, False), id="scale-channels-absolute"),
        pytest.param(ODD, 4, (4, "route", (3, 0), 16, 2, False), id="route-groups-of-a-pair"),
        pytest.param(ODD, 5, (5, "upsample", (4,), 16, 4, False), id="negative-upsample-downsamples"),
        pytest.param(ODD, 6, (6, "reorg", (5,), 64, 8, False), id="reorg"),
        pytest.param(ODD, 7, (7, "sam", (6, 1), 16, None, False), id="sam-takes-its-from-shape"),
        pytest.param(ODD, 8, (8, "involution", (7,), 64, None, False), id="own-type-filters"),
        pytest.param(LHALF, 1, (1, "route_lhalf", (0,), 16, 2, False), id="route-lhalf-first-half"),
        pytest.param(LHALF, 3, (3, "route", (2, 0), 48, 2, False), id="route-after-route-lhalf"),
    ],
)
def test_walk_gives_darknets_sources_channels_and_strides(text, index, expected):
    node = _nodes(text)[index]
    assert node[:4] == expected[:4] and node[5] == expected[5]
    assert node[4] == (None if expected[4] is None else Fraction(expected[4]))


def test_spans_are_exact_and_keys_read_as_darknet_reads_them():
    cfg = parse_cfg(ODD, "odd.cfg")
    conv = cfg.sections[0]
    assert (conv.written, conv.kind, conv.line) == ("conv", "convolutional", 4)
    key = conv.key("filters")
    assert key is not None and ODD[key.span.start : key.span.end] == " 16 # inline"
    assert conv.number("filters", 0) == 16 and key.text == "16#inline"
    route = cfg.sections[4]
    assert [(r.value, ODD[r.span.start : r.span.end]) for r in route.refs()] == [(-1, "-1"), (0, "0")]
    assert cfg.net.number("channels", 3) == 4


def test_crlf_files_parse_the_same():
    crlf = TINY4.replace("\n", "\r\n")
    assert _nodes(crlf) == _nodes(TINY4)
    cfg = parse_cfg(crlf, "t")
    assert all(not k.value.endswith("\r") for s in cfg.sections for k in s.keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("[convolutional]\nfilters=1\n", "must start with a \\[net\\]", id="no-net"),
        pytest.param("filters=1\n[net]\n", "before any \\[section\\]", id="key-before-section"),
        pytest.param("[net]\n[route\nlayers=-1\n", "without a closing", id="open-bracket"),
        pytest.param("[net]\n[convolutional]\nfilters\n", "not key=value", id="no-equals"),
        pytest.param("[net]\n[route]\nlayers=-1\n", "not an earlier layer", id="route-before-first"),
        pytest.param(
            "[net]\n[maxpool]\n[shortcut]\nfrom=3\n", "not an earlier layer", id="forward-reference"
        ),
        pytest.param("[net]\n[maxpool]\n[route]\n", "needs layers=", id="route-without-layers"),
    ],
)
def test_bad_files_are_refused_naming_the_line(text, message):
    with pytest.raises(YolopatchError, match=message):
        walk(parse_cfg(text, "bad.cfg"))


def test_an_insertion_renumbers_route_lhalf_and_the_builder_keeps_the_first_half():
    from yolopatch.darknet.build import build_cfg
    from yolopatch.darknet.decide import Request
    from yolopatch.darknet.edit import apply_cfg
    from yolopatch.operators.registry import OPERATORS

    op = OPERATORS["se"]
    text = LHALF.replace("[route_lhalf]\nlayers=-1", "[route_lhalf]\nlayers=0")
    result = apply_cfg(text, "0", Request(op, op.defaults, insert=True), "t.cfg")
    assert "[route_lhalf]\nlayers=4\n" in result.text  # absolute, past the four SE sections
    model = build_cfg(parse_cfg(result.text, "t.cfg"))
    seen = {}
    (lhalf,) = [layer for layer in model.layers() if layer.kind == "route_lhalf"]
    lhalf.register_forward_hook(lambda _m, inputs, output: seen.update(read=inputs[0][0], out=output))
    model(torch.rand(1, 3, 32, 32))
    assert torch.equal(seen["out"], seen["read"][:, :16])  # the first half of what it reads
