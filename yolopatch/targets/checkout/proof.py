"""A user's detection head (a subclass of the family's own head: YOLOv5's Detect, YOLOv7's IDetect, YOLOv9's
DDetect; marked `yolopatch_head`) proved in the checkout child (#30), where it could go wrong silently:
strides one per level and none zero (the Model computes them only for a head whose forward returns its
base's maps), one step of the checkout's own loss (utils/loss.py: `ComputeLoss` from YOLOv5 v5.0 and in
YOLOv7, `compute_loss` in YOLOv5 v4.0; YOLOv9's utils/loss_tal.py) on a synthetic batch, finite and with
gradients into the head, and the eval output shaped as that of the same model built with the head's base
class (what val.py, detect.py and export.py read).
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

from yolopatch.build.heads import eval_shapes, stock_args, training_step
from yolopatch.errors import YolopatchError
from yolopatch.targets.checkout.layout import Layout

# hyp.scratch-low.yaml's loss gains (YOLOv5 v6.0 on; v4.0's hyp.scratch.yaml has the same), as train.py
# hands them to the model before its loss is made
HYP = {
    "box": 0.05,
    "cls": 0.5,
    "cls_pw": 1.0,
    "obj": 1.0,
    "obj_pw": 1.0,
    "anchor_t": 4.0,
    "fl_gamma": 0.0,
    "label_smoothing": 0.0,
    "dfl": 1.5,  # YOLOv9's distribution focal loss (hyp.scratch-high.yaml)
}


def prove_heads(yolo: Any, model: Any, config: Path, name: str, layout: Layout) -> list[str]:
    """Raise YolopatchError where the head fails; notes on what could not be proved with this checkout."""
    heads = [m for m in model.modules() if getattr(m, "yolopatch_head", None)]
    if not heads:
        return []
    head = heads[-1]
    fix = f"subclass {head.yolopatch_head} and keep its {layout.keep}"
    _strides(head, name, fix)
    stock = _stock(yolo, head, config)
    notes = _one_loss_step(functools.partial(_step, yolo, layout.loss), model, head, stock, name, fix)
    _eval_shape(model, head, stock, name, fix)
    return notes


def _stock(yolo: Any, head: Any, config: Path) -> Any:
    """The same model built with the head's base class."""
    import yaml

    values = yaml.safe_load(config.read_text(encoding="utf-8").lstrip("\ufeff"))
    for row in [*values.get("backbone", []), *values.get("head", [])]:
        if row[2] == type(head).__name__:
            row[2], row[3] = head.yolopatch_head, stock_args(head, row[3])
    try:
        return yolo.Model(values, ch=3)
    except Exception as exc:  # the base class refuses the row's args
        raise YolopatchError(
            f"{config.name}: the same model with the checkout's own {head.yolopatch_head} in "
            f"{type(head).__name__}'s place does not build ({type(exc).__name__}: {exc}), so the eval output "
            "cannot be compared."
        ) from None


def _strides(head: Any, name: str, fix: str) -> None:
    stride = getattr(head, "stride", None)
    strides = [float(s) for s in stride.tolist()] if stride is not None else []
    if len(strides) != head.nl or not all(strides):
        raise YolopatchError(
            f"{name}: {type(head).__name__}'s strides are {strides} for {head.nl} levels: the Model computed "
            f"none for it (a head whose forward does not return its base's maps); {fix}."
        )


def _loss(yolo: Any, module: str, model: Any) -> Any:
    """The checkout's own loss as train.py makes it (`module`: utils.loss, YOLOv9's utils.loss_tal): a
    callable (predictions, targets) -> (loss, items)."""
    package = yolo.__name__.removesuffix("models.yolo")
    loss = importlib.import_module(f"{package}{module}")
    model.hyp, model.gr, model.nc = dict(HYP), 1.0, model.model[-1].nc
    if hasattr(loss, "ComputeLoss"):
        return loss.ComputeLoss(model)
    return lambda predictions, targets: loss.compute_loss(predictions, targets, model)


def _step(yolo: Any, module: str, model: Any) -> Any:
    """One step of the checkout's own loss: the loss, and whether every parameter of its head got a gradient."""
    import torch

    targets = torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.4, 0.4], [1.0, 0.0, 0.4, 0.6, 0.3, 0.2]])
    with training_step(model):
        loss, _items = _loss(yolo, module, model)(model(torch.rand(2, 3, 64, 64)), targets)
        loss.sum().backward()
        return loss.detach(), any(p.grad is not None for p in model.model[-1].parameters())


def _one_loss_step(step: Any, model: Any, head: Any, stock: Any, name: str, fix: str) -> list[str]:
    import torch

    try:
        loss, graded = step(model)
    except Exception as exc:  # whatever the loss raises about the head's outputs
        failure = f"{type(exc).__name__}: {exc}"
        try:
            step(stock)
        except Exception as own:  # its own head fails too: this checkout's loss, not the head
            return [
                f"{name}: {type(head).__name__} not trained one step here: the checkout's own loss fails with its "
                f"own {head.yolopatch_head} too ({type(own).__name__}: {own}; an old release with this torch)."
            ]
        raise YolopatchError(
            f"{name}: one step of the checkout's own loss with {type(head).__name__} failed ({failure}); with "
            f"its own {head.yolopatch_head} it runs. {fix[0].upper()}{fix[1:]}."
        ) from None
    if not torch.isfinite(loss).all() or not graded:
        raise YolopatchError(
            f"{name}: one step of the checkout's own loss with {type(head).__name__} gave "
            f"{'no gradient to the head' if torch.isfinite(loss).all() else 'a loss that is not finite'}."
        )
    return []


def _eval_shape(model: Any, head: Any, stock: Any, name: str, fix: str) -> None:
    """The eval output's shapes equal those of the same model with the stock head (its base class)."""
    ours, theirs = eval_shapes(model, stock)
    if ours != theirs:
        raise YolopatchError(
            f"{name}: {type(head).__name__}'s eval output has shapes {ours}; the checkout's own "
            f"{head.yolopatch_head} gives {theirs} here, which its val.py, detect.py and export.py read; {fix}."
        )
