"""A new user's journey (issue 28): the mistakes a user makes, each with its one-line message and nothing
changed; the hints yolopatch prints, run as printed; the way back to a checkpoint that loads after a revert."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import EXAMPLE, ROOT, STUBS, font_home, run_cli, snapshot, write_checkpoint

from yolopatch.userop.params import REQUIRED, Param


def _write(folder: Path, text: str, name: str = "model.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def hinted_commands(output: str) -> list[list[str]]:
    """The yolopatch commands of the `Next:` and `To load them again:` lines, as a user would copy them."""
    commands = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith(("Next:", "To load them again:")):
            text = line.split(":", 1)[1]
            if text.rstrip().endswith("then:") and i + 1 < len(lines):
                text += "   and   " + lines[i + 1]
            for part in (
                text.replace(", then:", "   and   ").replace("   then: ", "   and   ").split("   and   ")
            ):
                command = part.split("   (")[0].strip()
                if command.startswith("yolopatch "):
                    commands.append(shlex.split(command)[1:])
    return commands


# ---- mistakes: exit code, one line, what it says, nothing written -------------------------------------------

MISTAKES = [
    pytest.param(
        EXAMPLE.replace("SPPF, [1024, 5]", "SPPf, [1024, 5]"),
        ["apply", "{model}", "-l", "8"],
        1,
        "layer 9: SPPf is not a module YOLOv5 knows; did you mean SPPF?",
        id="typo-in-a-module-name",
    ),
    pytest.param(
        EXAMPLE.replace("SPPF, [1024, 5]", "SPPf, [1024, 5]"),
        ["layers", "{model}"],
        1,
        "did you mean SPPF?",
        id="typo-caught-by-layers-too",
    ),
    pytest.param(
        EXAMPLE, ["apply", "{model}", "-l", "40"], 2, "--layers 40: out of range", id="layer-out-of-range"
    ),
    pytest.param(
        EXAMPLE, ["apply", "{model}", "-l", "8", "--op", "nope"], 2, "--op nope: unknown", id="unknown-op"
    ),
    pytest.param(EXAMPLE, ["apply", "{model}", "--bogus"], 2, "No such option: --bogus", id="unknown-option"),
    pytest.param(
        EXAMPLE,
        ["apply", "{model}", "-l", "9", "--insert", "--op", "se", "--set", "r=eight"],
        2,
        "SE --reduction eight: not a whole number",
        id="a-value-of-the-wrong-kind",
    ),
]


@pytest.mark.parametrize(("text", "args", "code", "message"), MISTAKES)
def test_a_mistake_gets_one_line_and_changes_nothing(tmp_path, text, args, code, message):
    model = _write(tmp_path, text)
    before = snapshot(tmp_path)
    result = run_cli(*(a.format(model=model) for a in args))
    assert (result.returncode, result.stderr.count("\n")) == (code, 1), result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr
    assert snapshot(tmp_path) == before


def test_a_module_stated_with_channels_is_the_users_not_a_typo(tmp_path):
    model = _write(tmp_path, EXAMPLE.replace("SPPF, [1024, 5]", "SPPf, [1024, 5]"))
    result = run_cli(
        "apply", str(model), "-l", "8", "--channels", "SPPf=same", "-o", str(tmp_path / "out.yaml")
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.yaml").exists()


def test_an_unknown_operator_says_where_your_records_were_looked_for(tmp_path, monkeypatch):
    model = _write(tmp_path, EXAMPLE)
    monkeypatch.delenv("YOLOPATCH_CONFIG", raising=False)
    result = run_cli("apply", str(model), "-l", "8", "--op", "CPCA", cwd=tmp_path)
    assert result.returncode == 2
    assert f"no yolopatch.toml in {tmp_path.resolve()} or a parent folder" in result.stderr
    assert "YOLOPATCH_CONFIG=PATH/TO/yolopatch.toml" in result.stderr


@pytest.mark.parametrize(
    ("param", "text", "expected"),
    [
        pytest.param(Param("r", 16, "16"), "8", 8, id="int"),
        pytest.param(Param("e", 0.5, "0.5"), "1", 1, id="an-int-is-a-float"),
        pytest.param(Param("mode", "nearest", "'nearest'"), "bilinear", "bilinear", id="text"),
        pytest.param(Param("g", REQUIRED, "", annotation="int"), "3", 3, id="annotated"),
        pytest.param(Param("g", REQUIRED, "", annotation=""), "3", 3, id="no-default-a-literal"),
    ],
)
def test_a_set_value_is_read_as_its_parameters_type(param, text, expected):
    assert param.parse(text) == expected


@pytest.mark.parametrize(
    ("param", "text", "why"),
    [
        pytest.param(
            Param("r", 16, "16"), "eight", "not a whole number (the default is 16)", id="word-for-int"
        ),
        pytest.param(Param("r", 16, "16"), "1.5", "not a whole number", id="float-for-int"),
        pytest.param(Param("on", True, "True"), "1", "not True or False", id="int-for-bool"),
        pytest.param(Param("g", REQUIRED, "", annotation="int"), "two", "not a whole number", id="annotated"),
        pytest.param(Param("g", REQUIRED, ""), "two", "not a Python literal", id="bare-word-without-default"),
    ],
)
def test_a_set_value_of_the_wrong_kind_is_refused_saying_why(param, text, why):
    with pytest.raises(ValueError, match=re.escape(why)):
        param.parse(text)


# ---- the way back to a loadable checkpoint, following the hints as printed ----------------------------------


@pytest.mark.real
def test_every_hint_runs_as_printed_and_leads_back_to_a_loadable_checkpoint(yolov5_packages, tmp_path):
    work = tmp_path / "my project"  # a space: hints quote paths
    package = Path(shutil.copytree(yolov5_packages["7.0.14"], work / "yolov5"))  # a clone beside the yaml
    env = {"PYTHONPATH": str(STUBS), "HOME": str(font_home(tmp_path))}
    shutil.copy(package / "models" / "yolov5s.yaml", work / "yolov5s.yaml")
    shutil.copy(ROOT / "examples" / "my_modules.py", work / "my_modules.py")
    added = run_cli("ops", "add", "my_modules.py:ChannelGate", cwd=work, env=env)
    assert added.returncode == 0, added.stderr
    assert [c[0] for c in hinted_commands(added.stdout)] == ["apply", "inject"]
    for command in hinted_commands(added.stdout):  # the yaml and the clone at hand, no placeholder
        result = run_cli(*command, cwd=work, env=env)
        assert result.returncode == 0, (command, result.stderr)
    applied = run_cli("apply", "yolov5s.yaml", "-l", "9", "--insert", "--op", "se", cwd=work, env=env)
    assert applied.returncode == 0, applied.stderr
    commands = hinted_commands(applied.stdout)
    assert [c[0] for c in commands] == ["inject", "check"]
    commands[1] += ["--img", "128"]
    for command in commands:
        result = run_cli(*command, cwd=work, env=env)
        assert result.returncode == 0, (command, result.stderr)

    write_checkpoint(work / "runs" / "train" / "exp" / "weights" / "best.pt", "yolov5.models.common", "SE")
    reverted = run_cli("inject", "yolov5", "--revert", "--op", "SE", cwd=work, env=env)
    assert reverted.returncode == 0 and "hold SE layers" in reverted.stderr
    (back,) = hinted_commands(reverted.stderr)
    assert back == ["inject", "yolov5", "--op", "SE"]

    checked = run_cli("inject", "yolov5", "--check", cwd=work, env=env)
    assert checked.returncode == 1 and "SE needed by" in checked.stderr and "best.pt" in checked.stderr
    assert run_cli(*back, cwd=work, env=env).returncode == 0
    assert run_cli("inject", "yolov5", "--check", cwd=work, env=env).returncode == 0


def test_inject_without_op_takes_what_the_checkpoints_in_view_need_and_says_so(checkout, tmp_path):
    root = checkout("master")
    work = tmp_path / "work"
    write_checkpoint(work / "runs" / "train" / "exp" / "weights" / "best.pt", "models.common", "CBAM")
    result = run_cli("inject", str(root), cwd=work)
    assert result.returncode == 0, result.stderr
    assert "note: no --op: CBAM needed by" in result.stderr and "best.pt" in result.stderr
    assert "class CBAM" in (root / "models" / "common.py").read_text()


def test_a_failing_import_is_named_at_its_own_line(tmp_path):
    (tmp_path / "mine.py").write_text(
        "import torch\nfrom torch import nn\nfrom nowhere import Thing\n\n\nclass Gate(nn.Module):\n"
        "    def __init__(self, input_channels):\n        super().__init__()\n\n"
        "    def forward(self, x):\n        return x\n",
        encoding="utf-8",
    )
    result = run_cli("ops", "add", "mine.py:Gate", cwd=tmp_path)
    assert result.returncode == 1
    assert f"{tmp_path / 'mine.py'}:3: importing the file failed: ModuleNotFoundError" in result.stderr


def test_input_channels_is_an_input_channel_count():
    from yolopatch.userop.roles import INPUT_CHANNELS, OUTPUT_CHANNELS

    assert "input_channels" in INPUT_CHANNELS and "output_channels" in OUTPUT_CHANNELS
