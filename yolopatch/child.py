"""The one protocol between yolopatch and its child processes (builds with a target's own code, builds with
the user's operators, the probe of a user's class).

A child is a module run as `python -m MODULE ARGUMENTS... OUT.json` in a scratch folder, with an environment
that keeps the targets' writes out of the home folder and tells it where the user's yolopatch.toml is. It
writes one JSON value to OUT.json; a child that writes nothing crashed. A list of per-model results holds,
for each, {"report": ModelReport as a dict} or {"error": message}; `serve` writes that form for a child.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from yolopatch.errors import YolopatchError
from yolopatch.report import LayerReport, ModelReport, report_from_dict

# Where a child finds the user's yolopatch.toml: it runs in a scratch folder, not the user's.
CONFIG_VARIABLE = "YOLOPATCH_CONFIG"


@dataclass(frozen=True)
class Settings:
    """What a target's code reads from the environment: variables that name its settings folder (each with
    the folder's name under the platform's settings home, used when the variable is unset) and fixed
    variables (offline switches). A target declares them (Target.child_settings)."""

    folders: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, str] = field(default_factory=dict)


# The platform's settings home, by platform.system(); matplotlib's folder is ~/.config/matplotlib everywhere.
_SETTINGS_HOME = {"Windows": "AppData/Roaming", "Linux": ".config", "Darwin": "Library/Application Support"}


def child_environment(
    environ: Mapping[str, str], home: Path, system: str, scratch: Path, settings: Settings = Settings()
) -> dict[str, str]:
    """The environment of a child that imports a target's code.

    The user's own settings folders are kept when set or when they exist (some releases look for a cached
    font there at import and download it otherwise); only a folder that does not exist yet is sent to
    `scratch`, so a check creates nothing in the home folder. pip installs are switched off, and whatever
    the target's `settings.fixed` switches off.
    """
    base = home / _SETTINGS_HOME.get(system, "")
    defaults = {variable: base / folder for variable, folder in settings.folders.items()}
    defaults["MPLCONFIGDIR"] = home / ".config" / "matplotlib"
    env = {**environ, "PIP_NO_INDEX": "1", **settings.fixed}
    for variable, default in defaults.items():
        if not environ.get(variable) and not default.is_dir():
            env[variable] = str(scratch)
    return env


def call(
    module: str | Path,
    arguments: Sequence[str],
    what: str,
    *,
    config: Path | None = None,
    python: str | None = None,
    timeout: float | None = None,
    extra: Mapping[str, str] | None = None,
    settings: Settings = Settings(),
    on_timeout: Callable[[], YolopatchError] | None = None,
) -> Any:
    """Run `module` as a child (its last argument: where it writes its JSON value) and return that value.
    A Path is run as a script: the probe runs in the user's Python, which may not have yolopatch installed.

    `config`: the user's yolopatch.toml, passed in CONFIG_VARIABLE; `settings`: the target's (see
    child_environment); `extra`: more variables. `timeout` in seconds; past it the error
    `on_timeout` makes is raised. A child that writes no value crashed: its last lines are the error."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-") as scratch:
        out = Path(scratch) / "result.json"
        env = {
            **child_environment(os.environ, Path.home(), platform.system(), Path(scratch)),
            **(extra or {}),
        }
        if config is not None:
            env[CONFIG_VARIABLE] = str(config)
        run = [str(module)] if isinstance(module, Path) else ["-m", module]
        command = [python or sys.executable, *run, *arguments, str(out)]
        try:
            process = _launch(command, env, scratch, timeout)
        except subprocess.TimeoutExpired:
            raise (
                on_timeout() if on_timeout else YolopatchError(f"{what} took over {timeout:g} s")
            ) from None
        if not out.exists():
            tail = (process.stderr or process.stdout).strip().splitlines()[-3:]
            raise YolopatchError(f"{what} crashed: {' | '.join(tail)}")
        return json.loads(out.read_text(encoding="utf-8"))


def _launch(
    command: Sequence[str], env: Mapping[str, str], cwd: str, timeout: float | None
) -> subprocess.CompletedProcess[str]:
    """Start the child and wait for it (the tests replace this with a fork server that has torch imported)."""
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def reports(value: Sequence[Mapping[str, Any]]) -> list[ModelReport | YolopatchError]:
    """A child's per-model results: each its report, or its error."""
    return [_report(result) for result in value]


def _report(result: Mapping[str, Any]) -> ModelReport | YolopatchError:
    if "error" in result:
        return YolopatchError(result["error"])
    report = result["report"]
    exported = report.get("export")
    return ModelReport(
        **{
            **report,
            "layers": [LayerReport(**layer) for layer in report["layers"]],
            "export": report_from_dict(exported) if exported else None,
        }
    )


def write(out: Path, value: Any) -> None:
    """The child's side: its one JSON value."""
    out.write_text(json.dumps(value), encoding="utf-8")
