"""`check`: each yaml's target builds and measures it (its own code, or yolopatch's built-in builder); with
several yamls, one comparison (and, with --bench, their latencies measured in turns)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from yolopatch.build.check import check_format_with_users, users_in
from yolopatch.commands.operators import refuse_changed, user_operators
from yolopatch.errors import OptionError, YolopatchError
from yolopatch.files import read_text
from yolopatch.formats.base import ModelFormat
from yolopatch.formats.registry import format_for
from yolopatch.modelyaml import parse_model_yaml
from yolopatch.operators.spec import Operator
from yolopatch.report import Conditions, Latency, ModelReport
from yolopatch.targets.base import CheckRequest, Target
from yolopatch.targets.registry import csp_blocks, locate, target_for


@dataclass(frozen=True)
class CheckOptions:
    repo: Path | None = None
    scale: str | None = None
    img: int = 640
    batch: int = 1
    fused: bool = False
    bench: tuple[str, bool, int] | None = None  # --bench: (device, half, runs)


@dataclass(frozen=True)
class Comparison:
    reports: Sequence[ModelReport]  # the reference (--baseline, else the first) first
    conditions: Conditions | None = None  # --bench
    latencies: dict[str, Latency] | None = None


def target_of(path: Path) -> Target:
    """The target whose parse_model a yaml is for, from its content (the parse is cached)."""
    return target_for(parse_model_yaml(read_text(path), str(path)).values)


def one_target(paths: Sequence[Path], repo: Path | None, option: str) -> Target:
    """The one target the models belong to, for --fused and --bench (which time or fuse them together)."""
    families = {target_of(p).name: target_of(p) for p in paths}
    if len(families) > 1:
        raise YolopatchError(
            f"{option}: the models mix {' and '.join(families)} yamls; compare one family at a time."
        )
    (family,) = families.values()
    if repo is not None and not family.times_with_own_code:
        raise YolopatchError(
            f"{paths[0]}: {option} builds {family.name} yamls with yolopatch's own builder (the checkout's "
            "layers); leave out --repo."
        )
    return family


def check_one(path: Path, options: CheckOptions, export: str | None = None) -> ModelReport:
    fmt = format_for(path)
    if fmt is not None:
        return _check_format(fmt, path, options, export)
    if export == "opencv":
        raise OptionError(
            "--export",
            f"--export opencv runs darknet .cfg models in OpenCV; {path} is a yaml: use onnx or torchscript.",
        )
    if options.fused:
        one_target([path], options.repo, "--fused")
    return target_of(path).check(_request(path, options, export))


def compare(paths: Sequence[Path], options: CheckOptions) -> Comparison:
    """Each model's report; the models of one family are built together (one child for a checkout)."""
    formats = [p for p in paths if format_for(p) is not None]
    if formats:
        return Comparison([check_one(path, options) for path in paths])
    if options.fused or options.bench:
        one_target(paths, options.repo, "--fused" if options.fused else "--bench")
    requests = [_request(path, options) for path in paths]
    families = {target_of(p).name: target_of(p) for p in paths}
    if len(families) == 1:
        (family,) = families.values()
        reports = family.check_many(requests)
    else:
        reports = [target_of(r.path).check(r) for r in requests]
    if options.bench is None:
        return Comparison(reports)
    conditions, latencies = _bench(one_target(paths, options.repo, "--bench"), requests, options)
    return Comparison(reports, conditions, latencies)


def _bench(
    family: Target, requests: Sequence[CheckRequest], options: CheckOptions
) -> tuple[Conditions, dict[str, Latency]]:
    from yolopatch.build.check import bench_builtin

    assert options.bench is not None
    if family.times_with_own_code:
        return family.bench(requests, options.bench)  # type: ignore[return-value]
    users = sorted({op.name for r in requests for op in r.users})
    if users:
        raise YolopatchError(
            f"--bench of models with your own operators ({', '.join(users)}) with yolopatch's built-in builder "
            "is not supported yet: yolopatch runs your code only in a child process; time them with your "
            "target's own tools."
        )
    device, half, runs = options.bench
    texts = [(r.text, str(r.path)) for r in requests]
    return bench_builtin(family, texts, options.img, options.batch, device, half, options.fused, runs)


def _check_format(fmt: ModelFormat, path: Path, options: CheckOptions, export: str | None) -> ModelReport:
    """check of a model file of another format than the yaml: the format's own built-in builder, or with
    --repo the codebase's own model class (a target that builds that format)."""
    given = [
        ("--scale", options.scale is not None),
        ("--fused", options.fused),
    ]
    given += [
        ("--bench", options.bench is not None),
        ("--export", export is not None and options.repo is not None),
    ]
    for option, on in given:
        if on:
            raise OptionError(option, f"{option} is not supported for a {fmt.name} file ({path}) yet.")
    if options.repo is not None:
        target, _ = locate(options.repo)
        if target.model_suffix != path.suffix.lower():
            raise OptionError(
                "--repo",
                f"--repo {options.repo}: {target.name} builds {target.model_suffix} models, not {path}.",
            )
        o = options
        return target.check(CheckRequest(path, read_text(path), o.repo, None, o.img, o.batch))
    text = read_text(path)
    users = [op for op in user_operators().values() if fmt.uses(text, str(path), op)]
    if users:
        refuse_changed(users)
        report = check_format_with_users(fmt.name, text, str(path), options.img, options.batch, users)
    else:
        report = fmt.check(text, str(path), options.img, options.batch)
    if export is None:
        return report
    return replace(report, export=fmt.export(text, str(path), options.img, options.batch, export))


def _request(path: Path, options: CheckOptions, export: str | None = None) -> CheckRequest:
    """One check, with the user's operators the yaml uses (refused when their file changed since `ops add`)."""
    text = read_text(path)
    users: list[Operator] = users_in(text, str(path), list(user_operators().values()), csp_blocks())
    refuse_changed(users)
    o = options
    return CheckRequest(path, text, o.repo, o.scale, o.img, o.batch, export, o.fused, tuple(users))
