"""Child program for the ultralytics tests: insert after every row of a stock yaml with yolopatch, then build
each result at each scale with ultralytics' own parse_model (the channels: no forward pass, and no weight
initialization, which is most of a build's time and draws numbers nothing here reads), and compare the
channels.

    python -m ultralytics_probe [--every-scale] MODEL.yaml...   (a real ultralytics and the stand-ins on PYTHONPATH)

Without --every-scale each row is built at two of the scales, in turn (every scale is built, for some rows).

The inserted SE row is built as `Conv [C, 1, 1]`: the same first-argument rule, a module every release
registers. Prints one JSON line: for each MODEL.yaml, its version, built, refused, wrong, failed (several
yamls share the process: torch and ultralytics are imported once).
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys

import torch
import ultralytics
import yaml
from ultralytics.nn.tasks import parse_model

from yolopatch.commands.apply import ApplyOptions, apply_operator
from yolopatch.errors import YolopatchError
from yolopatch.operators.registry import get_operator


def _skip_weight_initialization() -> None:
    """torch's layers keep their shapes and allocate their tensors, without filling them (this process only
    builds models to read their channels)."""
    for cls in (torch.nn.modules.conv._ConvNd, torch.nn.modules.batchnorm._NormBase, torch.nn.Linear):
        cls.reset_parameters = lambda self: None  # type: ignore[method-assign]


def main(path: str, every_scale: bool) -> dict:
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
    _skip_weight_initialization()
    text = open(path, encoding="utf-8").read()
    doc = yaml.safe_load(text)
    report: dict = {"version": ultralytics.__version__, "built": 0, "refused": 0, "wrong": [], "failed": []}
    for index in range(len(doc["backbone"]) + len(doc["head"])):
        try:
            result = apply_operator(text, str(index), ApplyOptions(get_operator("se"), insert=True), path)
        except YolopatchError:
            report["refused"] += 1
            continue
        patched = yaml.safe_load(
            re.sub(r"\[-1, 1, SE, \[(\d+)\]\]", r"[-1, 1, Conv, [\1, 1, 1]]", result.text)
        )
        scales = list(doc["scales"])
        if not every_scale:
            scales = [scales[index % len(scales)], scales[(index + 1) % len(scales)]]
        for scale in scales:
            try:
                layers, _save = parse_model({**copy.deepcopy(patched), "scale": scale}, ch=3, verbose=False)
            except Exception as exc:  # ultralytics' own failure, whatever it is, is what we report
                report["failed"].append([index, scale, f"{type(exc).__name__}: {exc}"[:200]])
                continue
            conv = layers[index + 1].conv
            if conv.in_channels != conv.out_channels:
                report["wrong"].append([index, scale, conv.in_channels, conv.out_channels])
            report["built"] += 1
    return report


if __name__ == "__main__":
    every = "--every-scale" in sys.argv
    print(json.dumps({path: main(path, every) for path in sys.argv[1:] if path != "--every-scale"}))
