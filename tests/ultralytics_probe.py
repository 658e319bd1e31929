"""Child program for the ultralytics tests: insert after every row of a stock yaml with yolopatch, then build
each result at each scale with ultralytics' own parse_model, on the meta device (the channels without the
weights or a forward pass), and compare the channels.

    python -m ultralytics_probe MODEL.yaml        (with a real ultralytics and the stand-ins on PYTHONPATH)

The inserted SE row is built as `Conv [C, 1, 1]`: the same first-argument rule, a module every release
registers. Prints one JSON line: version, built, refused, wrong, failed.
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


def main(path: str) -> dict:
    logging.getLogger("ultralytics").setLevel(logging.ERROR)
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
        for scale in doc["scales"]:
            try:
                with torch.device("meta"):
                    layers, _save = parse_model(
                        {**copy.deepcopy(patched), "scale": scale}, ch=3, verbose=False
                    )
            except Exception as exc:  # ultralytics' own failure, whatever it is, is what we report
                report["failed"].append([index, scale, f"{type(exc).__name__}: {exc}"[:200]])
                continue
            conv = layers[index + 1].conv
            if conv.in_channels != conv.out_channels:
                report["wrong"].append([index, scale, conv.in_channels, conv.out_channels])
            report["built"] += 1
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
