"""The probe's request and its run: which constructions the child makes (two base widths, the stride,
upsampling and repeat arguments varied, a sweep of widths), and the child call itself.

What the observations mean is `learn`'s (pure code); the child is yolopatch/children/probe.py.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from yolopatch import child
from yolopatch.errors import YolopatchError
from yolopatch.userop.roles import RoleMap
from yolopatch.userop.source import ClassSource

PROBE_SECONDS = 120
WIDTHS = (8, 12, 16, 18, 20, 24, 36, 40, 48, 64, 96, 128)  # tell apart divisors 2 to 64
DIVISORS = (64, 32, 16, 8, 4, 2)
BASE = ((32, 48), (64, 96))  # (input channels, output channels) of the two base probes
DOUBLE = ((32, 64), (64, 128))  # and again, for a class with a constraint that 48 and 96 do not meet
SIZES = (16, 20)


def trials(roles: RoleMap, values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, dict]:
    """What the child builds: two base widths (train mode at the first), the stride, upsampling and repeat
    arguments varied, and the widths that reveal a divisibility constraint."""
    c1, c2, n = roles.having("c1"), roles.having("c2"), roles.having("n")
    stride, up = roles.having("stride"), roles.having("up")

    def kwargs(cin: int, cout: int, **extra: Any) -> dict[str, Any]:
        built = dict(values)
        built.update({k: v for k, v in ((c1, cin), (c2, cout)) if k})
        if n:
            built.setdefault(n, 1)
        if stride:
            built[stride] = 1
        if up:
            built.setdefault(up, 2 if defaults.get(up) in (None, 1) else defaults[up])
        built.update(extra)
        return built

    made: dict[str, dict] = {}
    for i, (cin, cout) in enumerate(BASE):
        made[f"w{cin}"] = {
            "kwargs": kwargs(cin, cout),
            "channels": cin,
            "sizes": list(SIZES),
            "train": i == 0,
        }
        if c2:  # c2 tied to c1 (a keep block that takes an output-channel argument), or twice c1
            made[f"w{cin}double"] = {
                "kwargs": kwargs(cin, 2 * cin),
                "channels": cin,
                "sizes": list(SIZES),
                "train": i == 0,
            }
            made[f"w{cin}same"] = {
                "kwargs": kwargs(cin, cin),
                "channels": cin,
                "sizes": list(SIZES),
                "train": i == 0,
            }
    # the other trials vary one argument, with the output channels equal to the input's (valid either way)
    cin = BASE[0][0]
    if stride:
        made["stride2"] = {"kwargs": kwargs(cin, cin, **{stride: 2}), "channels": cin, "sizes": list(SIZES)}
    if up:
        for factor in (2, 4):
            made[f"up{factor}"] = {"kwargs": kwargs(cin, cin, **{up: factor}), "channels": cin, "sizes": [8]}
    if n:
        for count in (1, 2, 3):
            made[f"n{count}"] = {"kwargs": kwargs(cin, cin, **{n: count}), "channels": cin, "sizes": [8]}
    for width in WIDTHS:
        made[f"width{width}"] = {"kwargs": kwargs(width, width), "channels": width, "sizes": [SIZES[0]]}
    return made


def probe(
    source: ClassSource,
    request_trials: Mapping[str, dict],
    sys_path: Sequence[str] = (),
    python: str | None = None,
    timeout: float = PROBE_SECONDS,
    settings: child.Settings = child.Settings(),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run the probe child on the user's file and return its observations (`settings`: what the targets'
    code it may import reads from the environment)."""
    request = {
        "file": str(source.path.resolve()),
        "class": source.name,
        "sys_path": list(sys_path),
        "trials": dict(request_trials),
        **(extra or {}),  # a factory the child calls instead of the file's class (timm:NAME)
    }

    def too_long() -> YolopatchError:
        return YolopatchError(
            f"{source.path}:{source.line}: probing {source.name} took longer than {timeout:g} s (the time "
            "limit); nothing was recorded. A class that sleeps, downloads or builds something huge at "
            "construction cannot be probed: declare what it needs with --set, or make it cheaper to build."
        )

    script = Path(__file__).parents[1] / "children" / "probe.py"  # run by path: not imported here
    with tempfile.TemporaryDirectory(prefix="yolopatch-probe-") as scratch:
        request_path = Path(scratch) / "request.json"
        request_path.write_text(json.dumps(request), encoding="utf-8")
        return child.call(
            script,
            [str(request_path)],
            f"{source.path}: the probe of {source.name}",
            python=python,
            timeout=timeout,
            extra={"OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""},
            on_timeout=too_long,
            settings=settings,
        )
