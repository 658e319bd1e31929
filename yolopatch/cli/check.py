"""`yolopatch check`: its options, one call into commands.check, the table or the comparison."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from yolopatch.cli.common import (
    ExportFormat,
    TableFormat,
    err,
    errors,
    notes,
    out,
    print_json,
)


def check(
    models: Annotated[
        list[Path],
        typer.Argument(
            metavar="MODEL.yaml...",
            help="The model yaml; several give one comparison table, the first (or --baseline) as the reference.",
            dir_okay=False,
        ),
    ],
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            metavar="REPO",
            help="Build with this checkout's own code (its own Model class, in a child process) instead of "
            "yolopatch's built-in blocks or the installed package.",
        ),
    ] = None,
    scale: Annotated[
        str | None,
        typer.Option(
            "--scale",
            metavar="X",
            help="For a yaml with scales: the scale (default: the one the file name implies).",
        ),
    ] = None,
    img: Annotated[
        int, typer.Option("--img", help="Input size for the forward and backward pass.", min=32)
    ] = 640,
    batch: Annotated[
        int, typer.Option("--batch", help="Batch size for the forward and backward pass.", min=1)
    ] = 1,
    baseline: Annotated[
        Path | None, typer.Option("--baseline", metavar="BASE.yaml", help="Another yaml to compare against.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the data as JSON on stdout.")] = False,
    export: Annotated[
        ExportFormat | None,
        typer.Option(
            "--export",
            help="Also export the model (ONNX: torch's default exporter, dynamic batch and size; TorchScript: "
            "trace), run the file at this size and at another batch and size, and compare with eager. "
            "A darknet .cfg: opencv (OpenCV 4's darknet reader, random weights in darknet's layout).",
        ),
    ] = None,
    table_format: Annotated[
        TableFormat | None,
        typer.Option(
            "--format",
            help="Print the comparison of the models (and --baseline) as a table to paste: markdown, csv, latex.",
        ),
    ] = None,
    fused: Annotated[
        bool,
        typer.Option(
            "--fused", help="Also the figures after fusing (Conv + BatchNorm folded, as the target's fuse())."
        ),
    ] = False,
    bench: Annotated[
        bool,
        typer.Option(
            "--bench",
            help="Time the model forward (after warm-up, models in turns; median, quartiles, FPS), labelled with "
            "its conditions.",
        ),
    ] = False,
    device: Annotated[
        str, typer.Option("--device", metavar="DEV", help="--bench on this device: cpu, cuda, cuda:1.")
    ] = "cpu",
    half: Annotated[bool, typer.Option("--half", help="--bench in fp16 (CUDA).")] = False,
    runs: Annotated[int, typer.Option("--runs", help="--bench: timed runs per model.", min=5)] = 50,
) -> None:
    """Build model yamls, run them forward and backward, and print per-layer parameters and GFLOPs.

    Several models give one comparison table (--format markdown, csv or latex to paste); --fused, --bench and --export add figures.
    """
    from yolopatch.commands.check import CheckOptions

    if (len(models) > 1 or table_format or bench) and export:
        raise typer.BadParameter("checks one model at a time", param_hint="--export")
    options = CheckOptions(repo, scale, img, batch, fused, (device, half, runs) if bench else None)
    if len(models) > 1 or table_format or bench:
        _compare([*([baseline] if baseline else []), *models], options, as_json, table_format)
        return
    _check_one(models[0], baseline, options, export.value if export else None, as_json)


def _check_one(model: Path, baseline: Path | None, options: Any, export: str | None, as_json: bool) -> None:
    """check MODEL.yaml [--baseline BASE.yaml]: the per-layer table and the summary line."""
    from yolopatch.commands.check import check_one
    from yolopatch.render.model import check_lines, report_table

    with errors(), err.status("building and running the model...", spinner="dots"):
        report = check_one(model, options, export)
        base = check_one(baseline, options) if baseline else None
    if as_json:
        print_json(
            {"model": dataclasses.asdict(report), "baseline": dataclasses.asdict(base) if base else None}
        )
        return
    notes(report.warnings)
    out.print(report_table(report, out.width))
    for line in check_lines(report, base, options.img):
        out.print(line, markup=False)


def _compare(paths: Sequence[Path], options: Any, as_json: bool, table_format: TableFormat | None) -> None:
    """check A.yaml B.yaml ...: one row per model against the reference (--baseline, else the first)."""
    from yolopatch.commands.check import compare
    from yolopatch.render.comparison import comparison_rows, comparison_table, comparison_text

    with errors(), err.status(f"building and running {len(paths)} models...", spinner="dots"):
        result = compare(paths, options)
    rows = comparison_rows(result.reports, latencies=result.latencies)
    caption = result.conditions.label() if result.conditions else ""
    if as_json:
        conditions = dataclasses.asdict(result.conditions) if result.conditions else None
        print_json(
            {
                "models": [dataclasses.asdict(r) for r in result.reports],
                "comparison": rows,
                "latency_conditions": conditions,
            }
        )
        return
    notes([f"{report.name}: {warning}" for report in result.reports for warning in report.warnings])
    if table_format:
        sys.stdout.write(comparison_text(rows, table_format.value, caption))
        return
    out.print(comparison_table(rows, out.width, caption))
    out.print(
        f"forward and backward at {options.img}x{options.img}, batch {options.batch}: ok for every model; every "
        "parameter got a gradient.",
        markup=False,
    )
