"""The Target of a family with this layout (YOLOv5, YOLOv7, YOLOv9): claiming yamls, finding checkouts,
inject and revert, and check with the built-in builder or, with --repo, the checkout's own Model class in a
child (`child.py`), whose summary line `reference_summary` reads."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from yolopatch import child
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.inject import InjectPlan
from yolopatch.operators.spec import Operator
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.checkout.layout import Checkout, Layout, find_checkout, locate_checkout, read_checkout
from yolopatch.userop.record import find_config
from yolopatch.userop.source import ImportKind

if TYPE_CHECKING:
    from yolopatch.report import ModelReport

# The model_info line, e.g. "YOLOv5s summary: 214 layers, 7235389 parameters, 7235389 gradients, 16.6 GFLOPs";
# YOLOv5 master writes the counts with thousands separators ("6,320,733 parameters"), YOLOv5 v4.0 to v6.0 and
# YOLOv7 "Model Summary: ... 17.0 GFLOPS", YOLOv9 "yolov9-c summary: ...".
_COUNT = r"\d{1,3}(?:,\d{3})+|\d+"
_SUMMARY = re.compile(
    rf"(?:\S+ summary|Model Summary): (?:{_COUNT}) layers, (?:{_COUNT}) parameters, (?:{_COUNT}) gradients"
    r"(?:, [\d.]+ GFLOP[sS])?"
)
_CHILD = "yolopatch.targets.checkout.child"


def reference_summary(log: str) -> str:
    """The first summary line a checkout printed while building ("" when it printed none)."""
    match = _SUMMARY.search(log)
    return match.group(0) if match else ""


class CheckoutTarget(Target):
    """A family of this layout: YOLOv5, YOLOv7 or YOLOv9. `signature`: modules only its yamls use;
    `anchor_style`: how its stock yamls write `anchors:` ("list" of pairs or an "int" count)."""

    layout: Layout
    signature: frozenset[str] = frozenset()
    anchor_style: str = "list"
    stock = "models/yolov5s.yaml"  # the stock yaml next-step text applies to, in the checkout's folder

    @property
    def imports(self) -> ImportKind:  # type: ignore[override]
        return self.layout.imports

    def claims(self, values: Mapping[str, Any], modules: Iterable[str]) -> int:
        """A yaml with `anchors:` whose modules this family knows; its own modules weigh most."""
        if "anchors" not in values:
            return 0
        modules = list(modules)
        anchors = values["anchors"]
        style = "int" if isinstance(anchors, int) and not isinstance(anchors, bool) else "list"
        known = sum(m in self.rules.known for m in modules)
        return 1 + known + 10 * len(self.signature & set(modules)) + (style == self.anchor_style)

    def locate(self, repo: Path) -> Checkout | None:
        return locate_checkout(repo, self.layout)

    # the planners and the builder are imported when asked for: `apply` never needs them
    def inject(self, where: Any, operators: Sequence[Operator], force: bool, python: str) -> InjectPlan:
        from yolopatch.targets.checkout.edits import inject

        return inject(where, operators, force)

    def revert(self, where: Any, names: Sequence[str] | None, force: bool) -> InjectPlan:
        from yolopatch.targets.checkout.edits import revert

        return revert(where, names, force)

    def stock_yaml(self, where: Any) -> Path | None:
        found = where.models.parent / self.stock
        return found if found.is_file() else None

    def checkpoint_roots(self, where: Any) -> Sequence[Path]:
        return (where.models.parent,)

    def injected(self, where: Any) -> list[str]:
        from yolopatch.targets.checkout.edits import injected_names

        return injected_names(where, read_checkout(where))

    def check(self, request: CheckRequest) -> ModelReport:
        """The built-in builder, in a child when the yaml uses the user's operators; with --repo, the
        checkout's own Model class in a child."""
        from yolopatch.build.check import check_builtin, check_with_users, export_builtin

        if request.scale is not None:
            raise OptionError(
                "--scale", f"--scale {request.scale}: {request.path} has one size (no scales:)."
            )
        if request.repo is not None:
            (report,) = self.check_many([request])
            return report
        builtin = self.builtin()
        if request.fused and builtin is not None and builtin.fuse_differs:
            raise YolopatchError(
                f"{request.path}: --fused: {self.name}'s fuse() also {builtin.fuse_differs}, which yolopatch's "
                f"built-in blocks do not; fuse with {self.name}'s own code for those figures."
            )
        text, name = request.text, str(request.path)
        if request.users:
            if request.export:
                raise YolopatchError(
                    f"{name}: --export of a model with your own operators "
                    f"({', '.join(op.name for op in request.users)}) is not supported yet: export it with "
                    f"{self.name}'s own exporter after `inject`."
                )
            (result,) = check_with_users(
                self, [(text, name)], request.img, request.batch, request.fused, request.users
            )
            if isinstance(result, YolopatchError):
                raise result
            return result
        report = check_builtin(self, text, name, request.img, request.batch, request.fused)
        if request.export:
            exported = export_builtin(self, text, name, request.img, request.batch, request.export)
            report = dataclasses.replace(report, export=exported)
        return report

    def check_many(self, requests: Sequence[CheckRequest]) -> list[ModelReport]:
        """With --repo, every yaml in one child (torch and the checkout imported once)."""
        repo = requests[0].repo if requests else None
        if repo is None:
            return [self.check(request) for request in requests]
        for request in requests:
            if request.scale is not None:
                raise OptionError("--scale", f"--scale {request.scale}: {self.name} yamls have one size.")
            if request.export:
                raise YolopatchError(
                    f"{request.path}: --export builds {self.name} yamls with yolopatch's own builder; leave "
                    "out --repo (the same layers as the checkout's Model), or use the checkout's own export.py."
                )
        # the child runs in a scratch folder: every path the user typed is resolved here, where they typed it
        models = find_checkout(repo, self.layout).models.resolve()
        pairs = [str(p) for r in requests for p in (r.path.resolve(), r.path)]
        img, batch = requests[0].img, requests[0].batch
        arguments = [type(self).__module__, str(models), str(img), str(batch), *pairs]
        value = child.call(
            _CHILD,
            arguments,
            f"{models}: building with the checkout",
            config=find_config(Path.cwd()),
            settings=self.child_settings,
        )
        results = child.reports(value)
        failed = next((r for r in results if isinstance(r, YolopatchError)), None)
        if failed is not None:
            raise failed
        return results  # type: ignore[return-value]
