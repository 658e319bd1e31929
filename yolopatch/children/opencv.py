"""Child process for `check MODEL.cfg --export opencv`: OpenCV's darknet reader runs the cfg.

    python -m yolopatch.children.opencv MODEL.cfg MODEL.weights IMAGE.npy OUT.npz LAYERS.json OUT.json

LAYERS.json names OpenCV's layers whose outputs are kept (`conv_N`: the linear convolution each [yolo]
head reads); OUT.npz gets them in that order. OUT.json gets OpenCV's version, its layer count and its [yolo] outputs' shapes, or an error
that says what to install (OpenCV 5 has no darknet reader). It imports no torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from yolopatch import child

_INSTALL = "pip install 'opencv-python-headless<5' (or yolopatch's extra: pip install 'yolopatch[opencv]')"


def run(cfg: str, weights: str, image: str, out: str, layers: list[str]) -> dict[str, Any]:
    try:
        import cv2
    except ImportError:
        return {"error": f"OpenCV is not installed for {sys.executable}: {_INSTALL}."}
    if not hasattr(cv2, "dnn") or not hasattr(cv2.dnn, "readNetFromDarknet"):
        return {"error": f"OpenCV {cv2.__version__} has no darknet reader (OpenCV 5 dropped it): {_INSTALL}."}
    import numpy as np

    try:
        net = cv2.dnn.readNetFromDarknet(cfg, weights)
        net.setInput(np.load(image))
        names = list(net.getLayerNames())
        heads = [list(o.shape) for o in net.forward(list(net.getUnconnectedOutLayersNames()))]
        kept = [net.forward(layer) for layer in layers]
    except cv2.error as exc:
        return {"error": f"OpenCV {cv2.__version__} cannot run it: {str(exc).strip().splitlines()[-1]}"}
    np.savez(out, *kept)
    return {"version": cv2.__version__, "layers": len(names), "heads": heads}


def main(argv: list[str]) -> None:
    cfg, weights, image, out, layers, result = argv
    child.write(Path(result), run(cfg, weights, image, out, json.loads(layers)))


if __name__ == "__main__":
    main(sys.argv[1:])
