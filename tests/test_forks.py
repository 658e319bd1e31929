"""apply, layers and check on YOLOv5-format yamls of forks (our own fixtures in their shape): never guess."""

from __future__ import annotations

import pytest
from helpers import EXAMPLE, check_yaml, fixture_text, geometry_of, graph, run_cli

from yolopatch.channels import ChannelHints, parse_channel_hints, simulate
from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.registry import get_operator

SHUFFLE = fixture_text("forks/shufflenet.yaml")
TINY = fixture_text("forks/tiny-branches.yaml")
INSERT = ApplyOptions(insert=True)


def _refusal(text: str, layers: str, options: ApplyOptions) -> str:
    with pytest.raises(YolopatchError) as info:
        apply_operator(text, layers, options, "fork.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


NEXT_FEEDS_NOTHING = [
    pytest.param(TINY, "2", "layer 3 (Conv) does not read it", id="read-only-by-a-later-concat"),
    pytest.param(TINY, "8", "layer 9 (Conv) does not read it", id="read-only-by-detect"),
    pytest.param(fixture_text("darknet.yaml"), "8", "layer 9 (Conv) does not read it", id="yolov3-minus-two"),
]


@pytest.mark.parametrize(("text", "layers", "reason"), NEXT_FEEDS_NOTHING)
def test_rewire_next_refuses_a_layer_that_would_feed_nothing(text, layers, reason):
    message = _refusal(text, layers, ApplyOptions(insert=True, rewire="next"))
    assert reason in message and "it would feed nothing. Use --rewire all" in message
    assert apply_operator(text, layers, INSERT).changed  # --rewire all moves every reader


def test_rewire_next_still_works_where_the_next_layer_reads_it():
    result = apply_operator(TINY, "3", ApplyOptions(insert=True, rewire="next"))
    assert graph(result.text)[5] == ("Conv", [32, 3, 1], (4,))


UNKNOWN = [
    pytest.param(
        "1",
        INSERT,
        "output channels (3) are an assumption: they rest on layer 1 (Shuffle_Block)",
        id="insert-after-unknown",
    ),
    pytest.param(
        "6",
        ApplyOptions(),
        "input channels (3) are an assumption: they rest on layer 5 (Shuffle_Block)",
        id="replace-after-unknown",
    ),
    pytest.param("9", INSERT, "rest on layer 4 (Shuffle_Block)", id="concat-of-unknown"),
]


@pytest.mark.parametrize(("layers", "options", "message"), UNKNOWN)
def test_a_count_that_rests_on_an_unknown_module_is_refused_with_a_way_to_state_it(layers, options, message):
    refusal = _refusal(SHUFFLE, layers, options)
    assert message in refusal
    assert "--channels Shuffle_Block=arg" in refusal and "--channels Shuffle_Block=same" in refusal


def test_stated_channels_let_the_edit_through_with_the_forks_numbers():
    hints = parse_channel_hints(["Shuffle_Block=arg", "0=32"])
    result = apply_operator(
        SHUFFLE, "4", ApplyOptions(values={"gc": 8}, insert=True, hints=hints), "fork.yaml"
    )
    assert graph(result.text)[5] == ("Involution", [232, 7, 1, 8, 4], (4,))
    replaced = apply_operator(SHUFFLE, "6", ApplyOptions(hints=hints), "fork.yaml")
    assert graph(replaced.text)[6][:2] == ("Involution", [464, 7, 1])


def test_a_layer_whose_input_sets_its_own_channels_needs_no_statement():
    assert apply_operator(SHUFFLE, "7", ApplyOptions()).changed  # layer 6 is a Conv: 464 channels, known
    assert apply_operator(SHUFFLE, "7", ApplyOptions(hints=ChannelHints({"Shuffle_Block": "arg"}))).changed


def test_simulation_names_what_each_number_rests_on():
    parsed = parse_model_yaml(SHUFFLE)
    shapes = simulate(parsed.logical_rows(), geometry_of(parsed.values)).shapes
    assert [str(s.c2_assumed) if s.c2_assumed else "" for s in shapes[:8]] == [
        "layer 0 (conv_bn_relu_maxpool)",
        "layer 1 (Shuffle_Block)",
        "layer 2 (Shuffle_Block)",
        "layer 3 (Shuffle_Block)",
        "layer 4 (Shuffle_Block)",
        "layer 5 (Shuffle_Block)",
        "",  # a Conv sets its own channels
        "",
    ]
    assert str(shapes[8].stride_assumed) == "layer 5 (Shuffle_Block)"


def test_layers_marks_assumed_values_and_drops_the_marks_once_stated(tmp_path):
    path = tmp_path / "fork.yaml"
    path.write_text(SHUFFLE, encoding="utf-8")
    plain = run_cli("layers", str(path))
    row = next(line for line in plain.stdout.splitlines() if line.startswith("│  1 "))
    assert [c.strip() for c in row.strip("│").split("│")][-2:] == ["3?", "?"]
    assert "? an assumption" in plain.stdout and "--channels Shuffle_Block=arg" in plain.stderr
    stated = run_cli("layers", str(path), "--channels", "Shuffle_Block=arg", "--channels", "0=32")
    row = next(line for line in stated.stdout.splitlines() if line.startswith("│  1 "))
    assert [c.strip() for c in row.strip("│").split("│")][-2:] == [
        "120",
        "?",
    ]  # make_divisible(116, 8); stride unknown


@pytest.mark.parametrize("term", ["Shuffle_Block", "Shuffle_Block=3", "4=x", "=arg", "4=0"])
def test_bad_channel_statements_are_usage_errors(term):
    with pytest.raises(OptionError) as info:
        parse_channel_hints([term])
    assert info.value.option == "--channels"


def test_layer_0_says_everything_that_must_change_at_once():
    message = _refusal(EXAMPLE, "0", ApplyOptions())
    assert (
        "its Involution would see 3 input channels: not divisible by --group-channels 16 (values that divide 3: "
        "1, 3); and 3 // --reduction 4 is 0 (use --reduction 3 or less)"
    ) in message


def test_check_accepts_a_four_input_detect_that_yolov5_builds():
    text = EXAMPLE.replace("anchors:\n", "anchors: 3\nold_anchors:\n").replace(
        "[[17, 20, 23], 1, Detect, [nc, anchors]]", "[[13, 17, 20, 23], 1, Detect, [nc, anchors]]"
    )
    report = check_yaml(text, "four.yaml", 128, 1)
    assert report.strides == [16.0, 8.0, 16.0, 32.0]


def test_check_errors_name_the_file():
    text = EXAMPLE.replace("[[-1, 14], 1, Concat, [1]]", "[[-1, 2], 1, Concat, [1]]")
    with pytest.raises(YolopatchError, match=r"^broken\.yaml: layer \d+ \(Concat\): forward pass failed"):
        check_yaml(text, "broken.yaml", 128, 1)


EXISTING = [
    pytest.param(
        "10",
        ApplyOptions(),
        "layer 10 (Involution)",
        "already an Involution with args [512, 3, 1], not the [512, 7, 1] asked for",
        id="replace",
    ),
    pytest.param(
        "9",
        INSERT,
        "layer 9 (Conv)",
        "followed by layer 10, already an Involution with args [512, 3, 1], not the [512, 7, 1]",
        id="insert",
    ),
]


@pytest.mark.parametrize(("layers", "options", "where", "message"), EXISTING)
def test_an_existing_operator_with_other_args_is_named_not_silently_kept(layers, options, where, message):
    refusal = _refusal(TINY, layers, options)
    assert where in refusal and message in refusal and "edit its args by hand" in refusal


def test_an_existing_operator_with_the_same_args_is_a_no_op():
    same = ApplyOptions(values={"k": 3})
    assert not apply_operator(TINY, "10", same).changed
    assert not apply_operator(TINY, "9", ApplyOptions(values={"k": 3}, insert=True)).changed


def test_existing_operator_with_other_args_in_a_module_selection_is_a_note_not_an_error():
    result = apply_operator(
        TINY, "Involution,Conv", ApplyOptions(get_operator("involution"), {"gc": 8, "r": 2})
    )
    assert any(
        "layer 10 (Involution) left as it is: it is already an Involution" in note for note in result.notes
    )
