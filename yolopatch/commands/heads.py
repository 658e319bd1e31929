"""A user's detection head proved before `apply` or `inject` writes anything (#30): the target's own model
class builds the model with it (the check child registers the head in memory, nothing edited), its strides
are one per level and none is zero, one step of the target's own loss is finite with gradients into the head,
and its eval output has the shapes of the target's own head. The model is the yaml `apply` would write, or,
for `inject`, the target's stock yaml with its head swapped.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

from yolopatch.errors import YolopatchError
from yolopatch.operators.spec import Operator
from yolopatch.targets.base import CheckRequest, Target


def prove_head(target: Target, op: Operator, text: str, name: Path, repo: Path | None) -> str:
    """Build `text` (the model as `name`) with the head `op` using the target's code at `repo` (None: the
    installed package); a line saying what was proved, or YolopatchError saying what failed."""
    with tempfile.TemporaryDirectory(prefix="yolopatch-head-") as folder:
        path = Path(folder) / name.name  # the same file name: a target may read the scale from it
        path.write_text(text, encoding="utf-8")
        try:
            report = target.check(CheckRequest(path, text, repo, None, 64, 1))
        except YolopatchError as exc:
            message = f"{op.name} not proven, nothing written: {exc}"
            raise YolopatchError(message.replace(str(path), str(name))) from None
    where = (
        f"the {target.name} checkout {repo}" if repo is not None else f"the installed {target.installable}"
    )
    untrained = next((w for w in report.warnings if f"{op.name} not trained one step" in w), None)
    step = (
        "one step of its own loss finite with gradients into the head"
        if untrained is None
        else f"no loss step ({untrained.split(': ', 1)[-1].rstrip('.')})"
    )
    return (
        f"{op.name} proved with {where}: its own model class builds it, strides one per level and none zero, "
        f"{step}, eval output shaped as {op.head}'s."
    )


def head_code(target: Target, repo: Path | None) -> tuple[Path | None, str]:
    """Where the head can be proved: the checkout at hand, else the installed package; ("", why not) when
    neither is there (the proof then waits for `check`)."""
    if repo is not None:
        return repo, ""
    if target.installable and importlib.util.find_spec(target.installable) is not None:
        return None, ""
    installed = f" and no installed {target.installable}" if target.installable else ""
    return None, (
        f"not proven here: no {target.name} checkout beside the model{installed}; "
        "`yolopatch check MODEL --repo CHECKOUT` proves it (build, strides, a loss step, the eval shape)."
    )
