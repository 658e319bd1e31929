"""`check MODEL.cfg --export opencv`: OpenCV's own darknet reader (`cv2.dnn.readNetFromDarknet`, OpenCV 4:
OpenCV 5 dropped it) reads the cfg with random weights written in darknet's binary layout, runs it, and the
inputs of its `[yolo]` heads are compared with the built-in builder's on the same weights and image.

darknet's weights file: a header (major, minor, revision as int32, images seen as int64), then per
`[convolutional]` in order: biases, then scales, rolling means and variances when `batch_normalize`, then
the weights. OpenCV runs in a child (yolopatch.children.opencv), with the Python that runs yolopatch.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from yolopatch import child
from yolopatch.darknet.build import DarknetModel, build_cfg
from yolopatch.darknet.cfg import Cfg, parse_cfg
from yolopatch.darknet.graph import IMAGE, walk
from yolopatch.errors import YolopatchError
from yolopatch.report import ExportReport, Parity

_CHILD = "yolopatch.children.opencv"
DARKNET_EPS = 1e-5  # darknet's batch-norm epsilon (.00001), which OpenCV's reader uses too
# OpenCV sums in another order than torch (and fuses batch norm into the weights): at 416 px, a
# yolov4-tiny-shaped cfg differs by 6e-5 of its largest value; a section read differently, by far more
OPENCV_TOLERANCE = 1e-3


def random_arrays(cfg: Cfg, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Every [convolutional]'s tensors in darknet's order, random but fixed by `seed`."""
    nodes = walk(cfg)
    channels = {IMAGE: cfg.net.number("channels", 3), **{n.index: n.channels for n in nodes}}
    rng = np.random.default_rng(seed)
    found = []
    for section, node in zip(cfg.sections, nodes, strict=True):
        if section.kind != "convolutional":
            continue
        filters, size = section.number("filters", 1), section.number("size", 1)
        c1 = int(channels[node.sources[0]] or 0) // section.number("groups", 1)
        found.append(("bias", rng.normal(0, 0.1, filters)))
        if section.number("batch_normalize", 0):
            found += [("scale", rng.uniform(0.5, 1.5, filters)), ("mean", rng.normal(0, 0.1, filters))]
            found.append(("variance", rng.uniform(0.5, 1.5, filters)))
        found.append(("weight", rng.normal(0, (2 / (c1 * size * size)) ** 0.5, filters * c1 * size * size)))
    return found


def darknet_weights(arrays: list[tuple[str, np.ndarray]]) -> bytes:
    header = np.array([0, 2, 0], np.int32).tobytes() + np.array([0], np.int64).tobytes()
    return header + b"".join(a.astype(np.float32).tobytes() for _, a in arrays)


def load_arrays(model: DarknetModel, arrays: list[tuple[str, np.ndarray]]) -> None:
    """The same tensors into the built-in builder's model (used in eval mode: batch norm reads them)."""
    found = iter(arrays)
    for layer in model.layers():
        if layer.kind != "convolutional":
            continue
        first, *rest = list(cast(nn.Sequential, layer.body))
        conv = cast(nn.Conv2d, first)
        bn = rest[0] if rest and isinstance(rest[0], nn.BatchNorm2d) else None
        values = {}
        for _ in range(4 if bn is not None else 1):
            name, array = next(found)
            values[name] = torch.tensor(array, dtype=torch.float32)
        conv.weight.data = torch.tensor(next(found)[1], dtype=torch.float32).reshape(conv.weight.shape)
        if bn is None:
            cast(torch.Tensor, conv.bias).data = values["bias"]
            continue
        bn.weight.data, bn.bias.data = values["scale"], values["bias"]
        cast(torch.Tensor, bn.running_mean).data = values["mean"]
        cast(torch.Tensor, bn.running_var).data = values["variance"]
        bn.eps = DARKNET_EPS


def export_opencv(text: str, name: str, img: int, batch: int) -> ExportReport:
    """Run the cfg in OpenCV's darknet reader and compare its heads' inputs with the built-in builder's."""
    cfg = parse_cfg(text, name)
    heads = [n for n in walk(cfg) if n.head]
    if not heads:
        raise YolopatchError(f"{name}: --export opencv compares the [yolo] heads' inputs, and it has none.")
    arrays = random_arrays(cfg)
    image = np.random.default_rng(1).random((batch, 3, img, img), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="yolopatch-opencv-") as folder:
        files = {key: Path(folder) / key for key in ("model.cfg", "model.weights", "image.npy", "out.npz")}
        files["model.cfg"].write_text(text, encoding="utf-8")
        files["model.weights"].write_bytes(darknet_weights(arrays))
        np.save(files["image.npy"], image)
        wanted = [_head_input(cfg, n.index, name) for n in heads]
        value = child.call(
            _CHILD,
            [
                *(str(files[k]) for k in ("model.cfg", "model.weights", "image.npy", "out.npz")),
                json.dumps(wanted),
            ],
            f"{name}: OpenCV's darknet reader",
        )
        found = _refused(value, name)
        saved = np.load(files["out.npz"])
        theirs = [saved[f"arr_{i}"] for i in range(len(wanted))]
        size = files["model.weights"].stat().st_size
    model = build_cfg(cfg).eval()
    load_arrays(model, arrays)
    with torch.no_grad():
        ours = [o.numpy() for o in model(torch.tensor(image))]
    report = ExportReport(
        format="opencv",
        exporter=f"OpenCV {found['version']} cv2.dnn.readNetFromDarknet, random weights in darknet's layout; "
        f"[yolo] outputs {', '.join('x'.join(map(str, s)) for s in found['heads'])}",
        opset=None,
        nodes=int(found["layers"]),
        size_bytes=size,
        parity=(_parity(theirs, ours, (batch, 3, img, img), name),),
    )
    worst = report.parity[0]
    if worst.max_rel > OPENCV_TOLERANCE:
        raise YolopatchError(
            f"{name}: --export opencv: OpenCV's darknet reader computes other values than darknet's layers as "
            f"yolopatch builds them (max abs {worst.max_abs:.2e}, relative {worst.max_rel:.2e} at the heads' "
            "inputs): a section it reads differently."
        )
    return report


def _head_input(cfg: Cfg, index: int, name: str) -> str:
    """OpenCV's name of what a [yolo] head reads: the section before it, a linear [convolutional] in
    darknet's YOLO cfgs (OpenCV names it `conv_N`; it counts activations apart)."""
    section = cfg.sections[index - 1]
    if section.kind != "convolutional" or section.get("activation", "logistic") != "linear":
        raise YolopatchError(
            f"{name}: --export opencv compares what each [yolo] head reads, a linear [convolutional]; layer "
            f"{index - 1} is a [{section.kind}]."
        )
    return f"conv_{index - 1}"


def _refused(value: Any, name: str) -> dict[str, Any]:
    if "error" in value:
        raise YolopatchError(f"{name}: --export opencv: {value['error']}")
    return value  # type: ignore[no-any-return]


def _parity(theirs: list[np.ndarray], ours: list[np.ndarray], shape: tuple[int, ...], name: str) -> Parity:
    if [t.shape for t in theirs] != [o.shape for o in ours]:
        raise YolopatchError(
            f"{name}: --export opencv: OpenCV's heads read maps of {[t.shape for t in theirs]}, the built-in "
            f"builder's {[o.shape for o in ours]}."
        )
    largest = max(float(np.abs(o).max()) for o in ours)
    worst = max(float(np.abs(t - o).max()) for t, o in zip(theirs, ours, strict=True))
    return Parity(shape, worst, worst / max(largest, 1.0))
