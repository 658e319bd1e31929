"""apply as a table: (fixture, selection, options) -> the exact lines removed and added."""

from __future__ import annotations

import difflib
import textwrap

import pytest
from helpers import TRANSFORMS, fixture_text

from yolopatch.commands.apply import ApplyOptions, apply_operator

REPLACE = ApplyOptions()
INSERT = ApplyOptions(insert=True)

CASES = [
    pytest.param(
        "../../examples/yolov5s.yaml",
        "8",
        REPLACE,
        """\
            -   [-1, 3, C3, [1024]],
            +   [-1, 1, Involution, [1024, 7, 1]],
        """,
        id="example-replace-c3",
    ),
    pytest.param(
        "../../examples/yolov5s.yaml",
        "7",
        ApplyOptions(values={"k": 5, "gc": 8, "r": 2}),
        """\
            -   [-1, 1, Conv, [1024, 3, 2]],  # 7-P5/32
            +   [-1, 1, Involution, [1024, 5, 2, 8, 2]],  # 7-P5/32
        """,
        id="example-replace-strided-conv-custom",
    ),
    pytest.param(
        "../../examples/yolov5s.yaml",
        "23",
        INSERT,
        """\
            +   [-1, 1, Involution, [1024, 7, 1]],  # 24
            -   [[17, 20, 23], 1, Detect, [nc, anchors]],  # boxes at strides 8, 16, 32
            +   [[17, 20, 24], 1, Detect, [nc, anchors]],  # boxes at strides 8, 16, 32
        """,
        id="example-insert-before-detect",
    ),
    pytest.param(
        "../../examples/yolov5s.yaml",
        "9",
        INSERT,
        """\
            +   [-1, 1, Involution, [1024, 7, 1]],  # 10
            -   [-1, 3, C3, [512, False]],  # 13
            +   [-1, 3, C3, [512, False]],  # 14
            -   [-1, 3, C3, [256, False]],  # 17 (P3/8 output)
            +   [-1, 3, C3, [256, False]],  # 18 (P3/8 output)
            -   [[-1, 14], 1, Concat, [1]],  # join head stride-16
            -   [-1, 3, C3, [512, False]],  # 20 (P4/16 output)
            +   [[-1, 15], 1, Concat, [1]],  # join head stride-16
            +   [-1, 3, C3, [512, False]],  # 21 (P4/16 output)
            -   [[-1, 10], 1, Concat, [1]],  # join head stride-32
            -   [-1, 3, C3, [1024, False]],  # 23 (P5/32 output)
            +   [[-1, 11], 1, Concat, [1]],  # join head stride-32
            +   [-1, 3, C3, [1024, False]],  # 24 (P5/32 output)
            -   [[17, 20, 23], 1, Detect, [nc, anchors]],  # boxes at strides 8, 16, 32
            +   [[18, 21, 24], 1, Detect, [nc, anchors]],  # boxes at strides 8, 16, 32
        """,
        id="example-insert-end-of-backbone",
    ),
    pytest.param(
        "spaced.yaml",
        "backbone:C3",
        REPLACE,
        """\
            -    [ -1, 3, C3, [ 128 ] ],
            +    [ -1, 1, Involution, [ 128, 7, 1 ] ],
            -    [ -1, 6, C3, [ 256 ] ],
            +    [ -1, 1, Involution, [ 256, 7, 1 ] ],
            -    [ -1, 3, C3, [ 512 ] ],
            +    [ -1, 1, Involution, [ 512, 7, 1 ] ],
        """,
        id="spaced-brackets-module-in-section",
    ),
    pytest.param(
        "spaced.yaml",
        "4",
        INSERT,
        """\
            +    [ -1, 1, Involution, [ 256, 7, 1 ] ],  # 5
            -    [ -1, 1, SPPF, [ 512, 5 ] ],  # 7
            +    [ -1, 1, SPPF, [ 512, 5 ] ],  # 8
            -    [ [ -1, 4 ], 1, Concat, [ 1 ] ],
            -    [ -1, 3, C3, [ 256, False ] ],  # 11 (P3/8)
            +    [ [ -1, 5 ], 1, Concat, [ 1 ] ],
            +    [ -1, 3, C3, [ 256, False ] ],  # 12 (P3/8)
            -    [ [ -1, 8 ], 1, Concat, [ 1 ] ],
            -    [ -1, 3, C3, [ 512, False ] ],  # 14 (P4/16)
            +    [ [ -1, 9 ], 1, Concat, [ 1 ] ],
            +    [ -1, 3, C3, [ 512, False ] ],  # 15 (P4/16)
            -    [ [ 11, 14 ], 1, Detect, [ nc, anchors ] ],
            +    [ [ 12, 15 ], 1, Detect, [ nc, anchors ] ],
        """,
        id="spaced-brackets-insert-stale-comment-kept",
    ),
    pytest.param(
        "master.yaml",
        "6",
        INSERT,
        """\
            +    [-1, 1, Involution, [512, 7, 1]], # 7
            -    [-1, 1, Conv, [256, 1, 1]], # 7
            -    [-1, 1, nn.Upsample, [None, 2, "nearest"]], # 8
            -    [[-1, 4], 1, Concat, [1]], # 9 融合 P3
            -    [-1, 3, C3, [256, False]], # 10 (P3/8-small)
            +    [-1, 1, Conv, [256, 1, 1]], # 8
            +    [-1, 1, nn.Upsample, [None, 2, "nearest"]], # 9
            +    [[-1, 4], 1, Concat, [1]], # 10 融合 P3
            +    [-1, 3, C3, [256, False]], # 11 (P3/8-small)
            -    [-1, 1, Conv, [256, 3, 2]], # 11
            -    [[-1, 7], 1, Concat, [1]], # 12
            -    [-1, 3, C3, [512, False]], # 13 (P4/16-medium)
            +    [-1, 1, Conv, [256, 3, 2]], # 12
            +    [[-1, 8], 1, Concat, [1]], # 13
            +    [-1, 3, C3, [512, False]], # 14 (P4/16-medium)
            -    [[10, 13], 1, Detect, [nc, anchors]], # Detect(P3, P4)
            +    [[11, 14], 1, Detect, [nc, anchors]], # Detect(P3, P4)
        """,
        id="master-layout-insert-last-backbone-row",
    ),
    pytest.param(
        "master.yaml",
        "10",
        ApplyOptions(insert=True, rewire="next"),
        """\
            +    [-1, 1, Involution, [256, 7, 1]], # 11
            -    [-1, 1, Conv, [256, 3, 2]], # 11
            -    [[-1, 7], 1, Concat, [1]], # 12
            -    [-1, 3, C3, [512, False]], # 13 (P4/16-medium)
            +    [-1, 1, Conv, [256, 3, 2]], # 12
            +    [[-1, 7], 1, Concat, [1]], # 13
            +    [-1, 3, C3, [512, False]], # 14 (P4/16-medium)
            -    [[10, 13], 1, Detect, [nc, anchors]], # Detect(P3, P4)
            +    [[10, 14], 1, Detect, [nc, anchors]], # Detect(P3, P4)
        """,
        id="master-layout-rewire-next-keeps-detect-on-original",
    ),
    pytest.param(
        "darknet.yaml",
        "8",
        INSERT,
        """\
            +   [-1, 1, Involution, [256, 7, 1]],  # 9
            -   [-2, 1, Conv, [64, 1, 1]],
            +   [-3, 1, Conv, [64, 1, 1]],
            -   [-1, 1, Bottleneck, [128, False]],  # 12 (P2/4-small)
            +   [-1, 1, Bottleneck, [128, False]],  # 13 (P2/4-small)
            -   [[12, 8], 1, Detect, [nc, anchors]]]  # Detect(P2, P3)
            +   [[13, 9], 1, Detect, [nc, anchors]]]  # Detect(P2, P3)
        """,
        id="darknet-relative-minus-two-recomputed",
    ),
    pytest.param(
        "darknet.yaml",
        "4",
        ApplyOptions(insert=True, rewire="next"),
        """\
            -   [-1, 1, Conv, [256, 3, 2]],  # 5-P3/8
            -   [-1, 1, Bottleneck, [256]],  # 6
            +   [-1, 1, Involution, [128, 7, 1]],  # 5
            +   [-1, 1, Conv, [256, 3, 2]],  # 6-P3/8
            +   [-1, 1, Bottleneck, [256]],  # 7
            -   [-1, 1, Conv, [256, 3, 1]],  # 8 (P3/8-large)
            +   [-1, 1, Conv, [256, 3, 1]],  # 9 (P3/8-large)
            -   [-1, 1, Bottleneck, [128, False]],  # 12 (P2/4-small)
            +   [-1, 1, Bottleneck, [128, False]],  # 13 (P2/4-small)
            -   [[12, 8], 1, Detect, [nc, anchors]]]  # Detect(P2, P3)
            +   [[13, 9], 1, Detect, [nc, anchors]]]  # Detect(P2, P3)
        """,
        id="darknet-rewire-next-keeps-skips",
    ),
    pytest.param(
        "p6.yaml",
        "11",
        INSERT,
        """\
            -   [-1, 1, SPPF, [1024, 5]]  # 11
            +   [-1, 1, SPPF, [1024, 5]],  # 11
            +   [-1, 1, Involution, [1024, 7, 1]]  # 12
            -   [-1, 3, C3, [768, False]],  # 15
            +   [-1, 3, C3, [768, False]],  # 16
            -   [-1, 3, C3, [512, False]],  # 19
            +   [-1, 3, C3, [512, False]],  # 20
            -   [-1, 3, C3, [256, False]],  # 23 (P3/8-small)
            +   [-1, 3, C3, [256, False]],  # 24 (P3/8-small)
            -   [[-1, 20], 1, Concat, [1]],  # cat head P4
            -   [-1, 3, C3, [512, False]],  # 26 (P4/16-medium)
            +   [[-1, 21], 1, Concat, [1]],  # cat head P4
            +   [-1, 3, C3, [512, False]],  # 27 (P4/16-medium)
            -   [[-1, 16], 1, Concat, [1]],  # cat head P5
            -   [-1, 3, C3, [768, False]],  # 29 (P5/32-large)
            +   [[-1, 17], 1, Concat, [1]],  # cat head P5
            +   [-1, 3, C3, [768, False]],  # 30 (P5/32-large)
            -   [[-1, 12], 1, Concat, [1]],  # cat head P6
            -   [-1, 3, C3, [1024, False]],  # 32 (P6/64-xlarge)
            +   [[-1, 13], 1, Concat, [1]],  # cat head P6
            +   [-1, 3, C3, [1024, False]],  # 33 (P6/64-xlarge)
            -   [[23, 26, 29, 32], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5, P6)
            +   [[24, 27, 30, 33], 1, Detect, [nc, anchors]],  # Detect(P3, P4, P5, P6)
        """,
        id="p6-insert-after-row-without-comma",
    ),
    pytest.param(
        "p6.yaml",
        "0-3",
        REPLACE,
        """\
            -   [-1, 1, Conv, [128, 3, 2]],  # 1-P2/4
            -   [-1, 3, C3, [128]],
            -   [-1, 1, Conv, [256, 3, 2]],  # 3-P3/8
            +   [-1, 1, Involution, [128, 7, 2]],  # 1-P2/4
            +   [-1, 1, Involution, [128, 7, 1]],
            +   [-1, 1, Involution, [256, 7, 2]],  # 3-P3/8
        """,
        id="p6-replace-range-skips-what-cannot",
    ),
]


def _changed_lines(old: str, new: str) -> list[str]:
    """The -/+ lines of a unified diff, in order, without headers."""
    lines = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=0)
    return [line for line in lines if line[:1] in "+-" and not line.startswith(("---", "+++"))]


@pytest.mark.parametrize("transform", TRANSFORMS)
@pytest.mark.parametrize(("fixture", "layers", "options", "expected"), CASES)
def test_apply_changes_exactly_these_lines(fixture, layers, options, expected, transform):
    text = TRANSFORMS[transform](fixture_text(fixture))
    result = apply_operator(text, layers, options)
    newline = "\r\n" if "crlf" in transform else "\n"
    assert result.text.startswith("\ufeff") == transform.startswith("bom")
    assert result.text.count("\r\n") == (result.text.count("\n") if newline == "\r\n" else 0)
    changed = _changed_lines(text.replace("\r\n", "\n"), result.text.replace("\r\n", "\n"))
    assert changed == textwrap.dedent(expected).splitlines()


NO_OPS = [
    pytest.param("../../examples/yolov5s.yaml", "8", REPLACE, id="replace-on-patched"),
    pytest.param("../../examples/yolov5s.yaml", "Involution", REPLACE, id="select-involutions"),
    pytest.param("../../examples/yolov5s.yaml", "7", INSERT, id="insert-after-layer-already-followed"),
]


@pytest.mark.parametrize(("fixture", "layers", "options"), NO_OPS)
def test_already_patched_is_a_no_op(fixture, layers, options):
    patched = apply_operator(fixture_text(fixture), "8", REPLACE if not options.insert else INSERT).text
    if options.insert:
        patched = apply_operator(fixture_text(fixture), "7", INSERT).text
    result = apply_operator(patched, layers, options)
    assert not result.changed
    assert any("already" in note for note in result.notes)


@pytest.mark.parametrize(
    ("fixture", "layers", "options"),
    [
        ("../../examples/yolov5s.yaml", "C3", REPLACE),
        ("../../examples/yolov5s.yaml", "C3", INSERT),
        ("spaced.yaml", "backbone", REPLACE),
        ("master.yaml", "head:C3", INSERT),
        ("darknet.yaml", "Bottleneck", ApplyOptions(insert=True, rewire="next")),
        ("p6.yaml", "2-11", REPLACE),
    ],
)
def test_applying_twice_equals_applying_once(fixture, layers, options):
    once = apply_operator(fixture_text(fixture), layers, options).text
    assert apply_operator(once, layers, options).text == once


def test_skipped_layers_are_reported_for_section_selections():
    result = apply_operator(fixture_text("../../examples/yolov5s.yaml"), "head", REPLACE)
    assert any("layer 12 (Concat) left as it is" in note for note in result.notes)
    assert [c.index for c in result.changes] == [10, 13, 14, 17, 18, 20, 21, 23]
