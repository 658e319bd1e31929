"""Next-step text: computed from the data at hand, paths quoted so that the hint runs as printed."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from yolopatch.hints import after_apply
from yolopatch.shell import shell_word
from yolopatch.targets.registry import TARGETS


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        pytest.param("models/yolov5s.yaml", "models/yolov5s.yaml", id="plain"),
        pytest.param("my models/a.yaml", '"my models/a.yaml"', id="space"),
        pytest.param("模型/a.yaml", "模型/a.yaml", id="cjk-is-a-word"),
        pytest.param("C:\\runs\\a.yaml", "C:\\runs\\a.yaml", id="windows"),
        pytest.param("a&b.yaml", '"a&b.yaml"', id="shell-character"),
    ],
)
def test_a_word_is_quoted_only_where_a_shell_needs_it(word, expected):
    assert shell_word(word) == expected


@pytest.mark.parametrize("target", TARGETS, ids=lambda t: t.name)
def test_the_hint_after_apply_names_the_written_file_whole(target):
    written = Path("my models") / "a b.yaml"
    hint = after_apply(target, written, None)
    commands = [line.strip().removeprefix("Next:").split("(once")[0] for line in hint.splitlines()]
    assert all(
        str(written) in shlex.split(part)
        for c in commands
        for part in c.split("   and   ")
        if "yolopatch" in part
    )
