"""Properties of apply over random selections: re-parses, touches only row lines, keeps the graph."""

from __future__ import annotations

from collections import Counter

from helpers import TRANSFORMS, check_result, fixture_text, graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError

FIXTURES = ["../../examples/yolov5s.yaml", "spaced.yaml", "master.yaml", "darknet.yaml", "p6.yaml"]


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
