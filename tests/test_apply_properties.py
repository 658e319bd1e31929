"""Properties of apply over random selections: re-parses, touches only row lines, keeps the graph."""

from __future__ import annotations

import difflib
import re
from collections import Counter

from helpers import TRANSFORMS, contract_inserted, fixture_text, graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolopatch.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError

FIXTURES = ["../../examples/yolov5s.yaml", "spaced.yaml", "master.yaml", "darknet.yaml", "p6.yaml"]
# a layer row: flow (`  [[-1, 1, Conv, ...` / `head: [[...`) or block (`  - [-1, 1, Conv, ...`)
_ROW_LINE = re.compile(r"^\s*(\w+:\s*)?(-\s+)?\[*\s*\[\s*(-?\d+|\[)")


def check_result(original: str, result: str, options: ApplyOptions) -> None:
    """Independent of yolopatch's parser: PyYAML and difflib only."""
    old_lines, new_lines = original.splitlines(keepends=True), result.splitlines(keepends=True)
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(
        None, old_lines, new_lines, autojunk=False
    ).get_opcodes():
        if tag == "equal":
            continue
        assert all(_ROW_LINE.match(line) for line in old_lines[i1:i2]), old_lines[i1:i2]
        assert all(_ROW_LINE.match(line) for line in new_lines[j1:j2]), new_lines[j1:j2]
    before, after = graph(original), graph(result)
    name = options.op.name
    if options.insert:
        contracted, inserted = contract_inserted(before, after, name)
        assert contracted == before
        for index in inserted:
            assert after[index][2] == (index - 1,), f"an inserted {name} reads the layer before it"
            args = after[index][1]
            assert args == options.op.yaml_args(args[0], 1, options.resolved)
    else:
        assert len(after) == len(before)
        for old, new in zip(before, after, strict=True):
            assert new[2] == old[2], "replacing never rewires"
            assert new == old or new[0] == name


def test_random_selections_keep_bytes_and_graph():
    """Random selections over every fixture and byte layout: each result keeps every other byte and the
    graph; refusals are one line. Most selections must be real edits, or the property says little."""
    outcomes: Counter[str] = Counter()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        fixture=st.sampled_from(FIXTURES),
        transform=st.sampled_from(sorted(TRANSFORMS)),
        picks=st.lists(st.integers(0, 40), min_size=1, max_size=5, unique=True),
        insert=st.booleans(),
        rewire=st.sampled_from(["all", "next"]),
        kernel=st.sampled_from([3, 5, 7]),
    )
    def run(fixture, transform, picks, insert, rewire, kernel):
        text = TRANSFORMS[transform](fixture_text(fixture))
        count = len(graph(text))
        spec = ",".join(str(p % count) for p in picks)
        options = ApplyOptions(values={"k": kernel}, insert=insert, rewire=rewire)
        try:
            result = apply_operator(text, spec, options)
        except YolopatchError as exc:
            assert "\n" not in str(exc) and "cannot" in str(exc)
            outcomes["refused"] += 1
            return
        outcomes["edited"] += 1
        check_result(text, result.text, options)
        assert result.text.startswith("\ufeff") == text.startswith("\ufeff")
        assert ("\r\n" in result.text) == ("\r\n" in text)
        again = apply_operator(result.text, spec, options) if not insert else None
        if again is not None:
            assert again.text == result.text

    run()
    assert outcomes["edited"] >= 0.4 * sum(outcomes.values()), outcomes
