"""The suite's fork server (tests/forkserver.py) starts a child as exec would: same working folder, environment,
argv, sys.path head, PYTHONPATH, exit status and output; a timeout kills the child and the server goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from forkserver import ForkServer

SCRIPT = """
import json, os, sys
print("out"); print("err", file=sys.stderr)
seen = {"cwd": os.getcwd(), "argv": sys.argv[1:], "head": sys.path[0], "extra": os.environ.get("EXTRA"),
        "on_path": os.environ["WANTED"] in sys.path, "bytecode": sys.dont_write_bytecode}
open(sys.argv[-1], "w").write(json.dumps(seen))
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture(scope="module")
def server():
    server = ForkServer()
    yield server
    server.close()


def _exec(command, env, cwd, timeout):
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.mark.parametrize("code", [0, 3], ids=["exit-0", "exit-3"])
def test_a_forked_child_sees_what_an_execd_child_sees(server, tmp_path, code):
    script = tmp_path / "bin" / "child.py"
    script.parent.mkdir()
    script.write_text(SCRIPT)
    wanted = tmp_path / "lib"
    env = {"PATH": "/usr/bin:/bin", "EXTRA": "x", "WANTED": str(wanted), "PYTHONPATH": str(wanted)}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    results = []
    for launch, name in ((_exec, "exec.json"), (server.run, "fork.json")):
        command = [sys.executable, str(script), str(code), str(tmp_path / name)]
        process = launch(command, env, str(tmp_path), 60)
        assert (process.returncode, process.stdout, process.stderr) == (code, "out\n", "err\n")
        results.append(json.loads((tmp_path / name).read_text()))
    exec_seen, fork_seen = results
    assert exec_seen["argv"][:-1] == fork_seen["argv"][:-1]
    assert {k: v for k, v in exec_seen.items() if k != "argv"} == {
        k: v for k, v in fork_seen.items() if k != "argv"
    }
    assert fork_seen["on_path"] and fork_seen["bytecode"] and fork_seen["head"] == str(script.parent)


def test_a_module_runs_with_the_working_folder_first_on_its_path(server, tmp_path):
    (tmp_path / "here.py").write_text("import os, sys; sys.exit(0 if sys.path[0] == os.getcwd() else 5)")
    process = server.run([sys.executable, "-m", "here"], {"PATH": "/usr/bin"}, str(tmp_path), 60)
    assert process.returncode == 0, process.stderr


def test_a_timeout_kills_the_child_and_the_server_serves_the_next(server, tmp_path):
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time; time.sleep(60)")
    with pytest.raises(subprocess.TimeoutExpired):
        server.run([sys.executable, str(sleeper)], {}, str(tmp_path), 0.5)
    quick = Path(tmp_path / "quick.py")
    quick.write_text("print('next')")
    assert server.run([sys.executable, str(quick)], {}, str(tmp_path), 60).stdout == "next\n"
