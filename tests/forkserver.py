"""Children from a fork server: the suite's children (yolopatch's probes and builds) start from a process that
has imported torch once, instead of each paying its 1.5 s import. Measured on the suite: 210 children, about
1.5 s each of the 2 cores' time saved.

The server only imports torch and yolopatch's own build modules (it never runs an operator, so no thread pool
exists to be broken by fork); each
request forks a child that takes the request's folder, environment, argv and output files, then runs the
module (`-m NAME`) or script as `python` would. The target's own code, the user's modules and every settings
variable are read in the child, after its environment is set, as in a fresh process. Children of another
Python (`--python`) and the CLI's own processes (helpers.run_process) still start with exec, which keeps that
path tested.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

_SERVER = r"""
import json, os, runpy, sys, traceback
# what every child would import: torch (1.45 s), then yolopatch's builder, measuring, yaml reading and
# registries (0.16 s more; none reads the environment when imported) and the libraries they use
import torch  # noqa: F401
import thop, yaml  # noqa: F401, E401
import yolopatch.build.builder, yolopatch.build.measure, yolopatch.channels  # noqa: F401, E401
import yolopatch.targets.registry, yolopatch.userop.adapter  # noqa: F401, E401

def entries(variable):
    return [entry for entry in (variable or "").split(os.pathsep) if entry]

SERVERS_PATH = entries(os.environ.get("PYTHONPATH"))

def child(request):
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # what Python reads from the environment at start: PYTHONPATH's folders, after the first entry
    sys.path[1:] = [*entries(os.environ.get("PYTHONPATH")), *(p for p in sys.path[1:] if p not in SERVERS_PATH)]
    sys.dont_write_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    for fd, name in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        opened = os.open(name, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(opened, fd)
        os.close(opened)
    sys.stdin = open(os.devnull)
    argv = request["argv"]
    code = 0
    try:
        if argv[0] == "-m":  # python -m puts the working folder first on sys.path
            sys.argv = [argv[1], *argv[2:]]
            sys.path[0] = os.getcwd()
            runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
        else:  # python SCRIPT puts the script's folder first
            sys.argv = list(argv)
            sys.path[0] = os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        child(request)
    print(json.dumps({"pid": pid}), flush=True)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"rc": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class ForkServer:
    """One server per test process, started at the first child; requests one at a time."""

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._lock = threading.Lock()

    def run(
        self, command: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        with self._lock, tempfile.TemporaryDirectory(prefix="yolopatch-fork-") as folder:
            stdout, stderr = Path(folder, "stdout"), Path(folder, "stderr")
            request = {
                "argv": list(command[1:]),
                "env": dict(env),
                "cwd": cwd,
                "stdout": str(stdout),
                "stderr": str(stderr),
            }
            server = self._server()
            assert server.stdin is not None
            server.stdin.write(json.dumps(request).encode() + b"\n")
            server.stdin.flush()
            pid = self._reply(None)["pid"]
            try:
                code = self._reply(timeout)["rc"]
            except subprocess.TimeoutExpired:
                os.kill(pid, signal.SIGKILL)
                self._reply(None)
                raise subprocess.TimeoutExpired(list(command), timeout or 0) from None
            return subprocess.CompletedProcess(
                list(command), code, stdout.read_text(errors="replace"), stderr.read_text(errors="replace")
            )

    def _server(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _SERVER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                bufsize=0,
                cwd=tempfile.gettempdir(),
            )
            self._pending = b""
            assert self._line(None) == b"ready"
        return self._process

    def _reply(self, timeout: float | None) -> dict[str, int]:
        return json.loads(self._line(timeout))

    def _line(self, timeout: float | None) -> bytes:
        """The server's next line, read from the pipe itself (a buffered reader could hold the second line
        while select waits on the pipe). The server writes each line at once, so only its first byte is
        waited for with the timeout."""
        assert self._process is not None and self._process.stdout is not None
        if b"\n" not in self._pending and timeout is not None:
            if not select.select([self._process.stdout], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired("fork server", timeout)
        while b"\n" not in self._pending:
            chunk = os.read(self._process.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError("the fork server died")
            self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        return line.strip()

    def close(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()


def launcher(server: ForkServer, exec_launch):  # noqa: ANN001, ANN201 (yolopatch.child._launch's type)
    """yolopatch.child._launch for the tests: this Python's children from the server, others with exec."""

    def launch(
        command: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float | None
    ) -> subprocess.CompletedProcess[str]:
        if command[0] != sys.executable:  # another venv's python may link to the same binary
            return exec_launch(command, env, cwd, timeout)
        return server.run(command, env, cwd, timeout)

    return launch
