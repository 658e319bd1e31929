"""`apply` on darknet .cfg files: replace and insert, native SE, sections of the operators' own types, every
crossing index rewritten in the form the file wrote it, bytes kept, refusals, applying twice.

An independent reader (`_references`, below) resolves each layer's indices from the text alone, so the
tests do not trust the code they test."""

from __future__ import annotations

import difflib
import re

import pytest
from helpers import FIXTURES
from hypothesis import given, settings
from hypothesis import strategies as st

from yolopatch.darknet.decide import Request
from yolopatch.darknet.edit import apply_cfg
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.operators.registry import OPERATORS

TINY4 = (FIXTURES / "darknet" / "tiny4.cfg").read_bytes().decode()
RES3 = (FIXTURES / "darknet" / "res3.cfg").read_bytes().decode()
KEEPING = [name for name, op in OPERATORS.items() if op.keeps_channels]


def _request(name: str, insert: bool = False, rewire: str = "all", **values) -> Request:
    op = OPERATORS[name]
    return Request(op, {**op.defaults, **values}, insert, rewire)


def _sections(text: str) -> list[tuple[str, dict[str, str]]]:
    """(type, keys) of every layer after [net], read with nothing but string methods."""
    found: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        line = "".join(line.split())
        if line.startswith("["):
            found.append((line[1:-1].lower(), {}))
        elif line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            found[-1][1][key] = value
    return found[1:]


def _references(text: str) -> list[list[int]]:
    """Each layer's explicit references, absolute (darknet's atoi on each comma-separated piece)."""
    result = []
    for index, (kind, keys) in enumerate(_sections(text)):
        values = keys.get("layers", "") if kind == "route" else keys.get("from", "")
        numbers = [int(m.group()) for piece in values.split(",") if (m := re.match(r"[+-]?\d+", piece))]
        result.append([index + n if n < 0 else n for n in numbers])
    return result


def _changed_lines(old: str, new: str) -> tuple[list[str], list[str]]:
    """Lines removed from and added to `old`, in order."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    removed, added = [], []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            removed += a[i1:i2]
            added += b[j1:j2]
    return removed, added


@pytest.mark.parametrize(
    ("text", "layers", "request_", "removed", "added"),
    [
        pytest.param(
            TINY4,
            "12",
            _request("se"),
            ["batch_normalize=1\n", "filters=64\n", "size=3\n", "layers = -6,-1\n", "layers = -1, 23\n"],
            ["[avgpool]\n", "layers = -9,-1\n", "layers = -1, 26\n"],
            id="se-replaces-a-csp-conv-relative-stays-relative",
        ),
        pytest.param(
            RES3,
            "9",
            _request("se", insert=True),
            ["layers = -1, 12 ###P4\n"],
            ["[avgpool]\n", "layers = -1, 16 ###P4\n"],
            id="se-insert-keeps-inline-comment",
        ),
        pytest.param(
            RES3,
            "13",
            _request("involution"),
            ["batch_normalize=1\n", "size=3\n", "pad=1\n", "activation=leaky\n"],
            ["[involution]\n", "size=7\n", "group_channels=16\n", "reduction=4\n"],
            id="involution-replaces-a-strided-conv-nothing-moves",
        ),
        pytest.param(
            RES3,
            "17",
            _request("cbam", insert=True, rewire="next"),
            ["layers=-2\n", "layers=-4\n", "layers=-1,-3,-5,-6\n"],
            ["[cbam]\n", "layers=-3\n", "layers=-5\n", "layers=-1,-3,-5,-7\n"],
            id="cbam-insert-rewire-next-spp-routes-keep-their-layer",
        ),
    ],
)
def test_edits_change_only_the_sections_and_the_indices(text, layers, request_, removed, added):
    result = apply_cfg(text, layers, request_, "m.cfg")
    got_removed, got_added = _changed_lines(text, result.text)
    assert [line for line in removed if line in got_removed] == removed
    assert [line for line in added if line in got_added] == added
    others = [line for line in got_removed if not line.startswith(("layers", "from"))]
    edited = "".join(_section_lines(text, int(layers))) if not request_.insert else ""
    assert all(line in edited.splitlines(keepends=True) for line in others)


def _section_lines(text: str, index: int) -> list[str]:
    """The lines of layer `index` from its header to the next header."""
    lines, seen, found = text.splitlines(keepends=True), -2, []
    for line in lines:
        seen += line.startswith("[")
        if seen == index:
            found.append(line)
    return found


def test_a_native_se_is_four_darknet_sections_with_explicit_pad_and_activations():
    result = apply_cfg(TINY4, "16", _request("se", insert=True), "t.cfg")
    sections = _sections(result.text)[17:21]
    assert sections == [
        ("avgpool", {}),
        ("convolutional", {"filters": "16", "size": "1", "stride": "1", "pad": "1", "activation": "leaky"}),
        (
            "convolutional",
            {"filters": "256", "size": "1", "stride": "1", "pad": "1", "activation": "logistic"},
        ),
        ("scale_channels", {"from": "-4"}),
    ]
    assert result.native and [c.index for c in result.changes] == [20]


def test_a_native_sam_is_a_logistic_batch_normalized_conv_and_a_sam_section():
    result = apply_cfg(TINY4, "16", _request("sam", insert=True), "t.cfg")
    sections = _sections(result.text)[17:19]
    assert sections == [
        (
            "convolutional",
            {
                "batch_normalize": "1",
                "filters": "256",
                "size": "1",
                "stride": "1",
                "pad": "1",
                "activation": "logistic",
            },
        ),
        ("sam", {"from": "-2"}),
    ]
    assert result.native and [c.index for c in result.changes] == [18]
    again = apply_cfg(result.text, "16", _request("sam", insert=True), "t.cfg")
    assert again.text == result.text  # applying twice equals applying once
    with pytest.raises(
        YolopatchError,
        match=r"layer 17 \[convolutional\]: cannot insert after it with SE: part of the SAM \(layers 17-18\)",
    ):
        apply_cfg(result.text, "17", _request("se", insert=True), "t.cfg")


def test_the_hidden_activation_is_the_models_own():
    mish = TINY4.replace("activation=leaky", "activation=mish")
    result = apply_cfg(mish, "16", _request("se", insert=True), "t.cfg")
    assert _sections(result.text)[18][1]["activation"] == "mish"


@pytest.mark.parametrize(
    ("rewire", "insert"), [("all", True), ("next", True), ("all", False)], ids=["insert", "next", "replace"]
)
@pytest.mark.parametrize("text", [TINY4, RES3], ids=["tiny4", "res3"])
def test_every_reference_names_the_same_layer_after_an_edit_anywhere(text, rewire, insert):
    _check_everywhere(text, rewire, "se", insert)


def _check_everywhere(text: str, rewire: str, name: str, insert: bool = True) -> None:
    """At every layer the operator can go: each reference of every other layer names the same layer (a
    replaced one: the operator's output section)."""
    before = _references(text)
    for position in range(len(before)):
        try:
            result = apply_cfg(text, str(position), _request(name, insert=insert, rewire=rewire), "m.cfg")
        except YolopatchError:
            continue
        size = len(_sections(result.text)) - len(before)
        after = _references(result.text)
        for old, refs in enumerate(before):
            if old == position and not insert:
                continue
            new = old if old < position or (old == position and insert) else old + size
            assert after[new] == [_moved(old, t, position, size, rewire) for t in refs], (position, old)


def _moved(reader: int, target: int, position: int, size: int, rewire: str) -> int:
    """Where a reference from input layer `reader` to `target` must point after `size` sections went in
    after `position`."""
    if target < position:
        return target
    if target == position:
        return position + size if rewire == "all" or reader == position + 1 else position
    return target + size


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_random_models_keep_their_references_whatever_the_edit(data):
    """Chains of 1x1 convolutions with routes and shortcuts back to any earlier layer, written relative or
    absolute at random, CRLF or not; an operator inserted after any layer, or replacing any convolution
    (a native SE: four sections for one), leaves every reference naming the same layer."""
    count = data.draw(st.integers(3, 12))
    parts = ["[net]\nchannels=3\n\n[convolutional]\nfilters=32\nsize=1\nstride=1\npad=1\nactivation=leaky\n"]
    for index in range(1, count):
        kind = data.draw(st.sampled_from(["conv", "shortcut", "route"]))
        target = data.draw(st.integers(0, index - 1))
        written = target - index if data.draw(st.booleans()) else target
        if kind == "shortcut":
            parts.append(f"\n[shortcut]\nfrom={written}\nactivation=linear\n")
        elif kind == "route":
            parts.append(f"\n[route]\nlayers = {written}\n# a comment\n")
        else:
            parts.append("\n[convolutional]\nfilters=32\nsize=1\nstride=1\npad=1\nactivation=leaky\n")
    text = "".join(parts)
    if data.draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    insert = data.draw(st.booleans())
    rewire = data.draw(st.sampled_from(["all", "next"])) if insert else "all"
    _check_everywhere(text, rewire, data.draw(st.sampled_from(["se", "sam", "simam", "involution"])), insert)


@pytest.mark.parametrize("name", list(OPERATORS))
@pytest.mark.parametrize(
    ("text", "layers", "insert"),
    [
        pytest.param(TINY4, "convolutional", True, id="tiny4-insert-every-conv"),
        pytest.param(TINY4, "12", False, id="tiny4-replace-one"),
        pytest.param(TINY4, "20-21", False, id="tiny4-replace-range"),
        pytest.param(RES3, "route,shortcut", True, id="res3-insert-routes-shortcuts"),
        pytest.param(RES3, "3-7", True, id="res3-insert-range"),
        pytest.param(RES3, "conv", False, id="res3-replace-every-conv"),
    ],
)
def test_applying_twice_changes_nothing(name, text, layers, insert):
    request = _request(name, insert=insert)
    try:
        first = apply_cfg(text, layers, request, "m.cfg")
    except YolopatchError as exc:  # nothing this operator can do there: refused the second time too
        with pytest.raises(YolopatchError, match=re.escape(str(exc)[:20])):
            apply_cfg(text, layers, request, "m.cfg")
        return
    assert first.changed
    assert apply_cfg(first.text, layers, request, "m.cfg").text == first.text


@pytest.mark.parametrize(("name", "insert"), [("se", True), ("involution", False), ("eca", True)])
def test_crlf_stays_crlf(name, insert):
    crlf = TINY4.replace("\n", "\r\n")
    result = apply_cfg(crlf, "12", _request(name, insert=insert), "t.cfg")
    assert result.text == apply_cfg(TINY4, "12", _request(name, insert=insert), "t.cfg").text.replace(
        "\n", "\r\n"
    )


@pytest.mark.parametrize(
    ("text", "layers", "request_", "message"),
    [
        pytest.param(
            RES3, "4", _request("involution"), "a \\[shortcut\\] is not a convolution", id="replace-shortcut"
        ),
        pytest.param(
            RES3,
            "26",
            _request("involution"),
            "prediction convolution of the \\[yolo\\] head",
            id="replace-prediction",
        ),
        pytest.param(
            RES3, "27", _request("se", insert=True), "head is the model's output", id="insert-after-head"
        ),
        pytest.param(
            RES3, "26", _request("se", insert=True), "must read its prediction", id="insert-before-head"
        ),
        pytest.param(
            RES3, "3", _request("se"), "turns 32 channels into 64", id="se-replace-changes-channels"
        ),
        pytest.param(
            RES3,
            "0",
            _request("involution"),
            "not divisible by --group-channels 16",
            id="involution-3-channels",
        ),
        pytest.param(
            RES3,
            "18",
            _request("se", insert=True, rewire="next"),
            "does not read it",
            id="rewire-next-no-reader",
        ),
        pytest.param(
            RES3, "40", _request("se"), "out of range; this model has layers 0-35", id="out-of-range"
        ),
        pytest.param(RES3, "backbone", _request("se"), "no backbone or head sections", id="backbone-word"),
        pytest.param(
            RES3, "head:convolutional", _request("se"), "section types \\(convolutional", id="head-term"
        ),
        pytest.param(RES3, "deconvolutional", _request("se"), "matches no layer", id="absent-type"),
    ],
)
def test_refusals_name_the_layer_and_the_reason(text, layers, request_, message):
    with pytest.raises((YolopatchError, OptionError), match=message):
        apply_cfg(text, layers, request_, "m.cfg")


def test_a_range_skips_what_cannot_be_edited_with_a_note():
    result = apply_cfg(RES3, "24-28", _request("se", insert=True), "m.cfg")
    assert [c.index for c in result.changes] == [
        28,
        33,
        40,
    ]  # after 24, 25 and 28 (26 feeds the head, 27 is it)
    assert any("layer 26 [convolutional] left as it is" in note for note in result.notes)


def test_a_byte_order_mark_and_odd_spacing_stay():
    text = "\ufeff" + RES3.replace("layers = -1, 12 ###P4", "layers =\t-1 ,  12 ###P4")
    result = apply_cfg(text, "9", _request("se", insert=True), "m.cfg")
    assert result.text.startswith("\ufeff[net]") and "layers =\t-1 ,  16 ###P4\n" in result.text
