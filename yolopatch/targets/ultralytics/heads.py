"""A user's detection head (a subclass of ultralytics' Detect, marked `yolopatch_head`) proved in the child,
where it could go wrong silently (#30): strides one per level and none zero (Detect's own computation gives
them only when the head returns Detect's outputs), one step of ultralytics' own loss on a synthetic batch
(finite, with gradients into the head), and the eval output shaped as the stock head's (what val, predict
and export read), compared with the same model built with the head's own base class.
"""

from __future__ import annotations

import copy
from typing import Any

from yolopatch.build.heads import eval_shapes, stock_args, training_step
from yolopatch.errors import YolopatchError

_FIX = "subclass Detect and keep its cv2/cv3 outputs, or override forward_head"


def prove_heads(model: Any, config: dict[str, Any], name: str) -> None:
    heads = [m for m in model.modules() if getattr(m, "yolopatch_head", None)]
    if not heads:
        return
    head = heads[-1]
    _strides(head, name)
    _one_loss_step(model, head, name)
    _eval_shape(model, head, config, name)


def _strides(head: Any, name: str) -> None:
    import torch

    strides = [float(s) for s in getattr(head, "stride", torch.zeros(0)).tolist()]
    if len(strides) != head.nl or not all(strides):
        raise YolopatchError(
            f"{name}: {type(head).__name__}'s strides are {strides} for {head.nl} levels: ultralytics computed "
            f"none for it (a head whose forward does not return Detect's outputs); {_FIX}."
        )


def _one_loss_step(model: Any, head: Any, name: str) -> None:
    import torch
    from ultralytics.cfg import get_cfg

    args = getattr(model, "args", None)
    model.args = get_cfg()
    batch = {
        "img": torch.rand(2, 3, 64, 64),
        "batch_idx": torch.tensor([0.0, 1.0]),
        "cls": torch.tensor([[0.0], [0.0]]),
        "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.4], [0.4, 0.6, 0.3, 0.2]]),
    }
    with training_step(model):
        try:
            loss, _items = model.loss(batch)
            loss.sum().backward()
        except Exception as exc:  # whatever the loss raises about the head's outputs
            raise YolopatchError(
                f"{name}: one step of ultralytics' own loss with {type(head).__name__} failed: "
                f"{type(exc).__name__}: {exc}. Keep Detect's outputs (cv2/cv3), or override forward_head."
            ) from None
        graded = any(p.grad is not None for p in head.parameters())
    model.args, model.criterion = args, None
    if not torch.isfinite(loss).all() or not graded:
        raise YolopatchError(
            f"{name}: one step of ultralytics' own loss with {type(head).__name__} gave "
            f"{'no gradient to the head' if torch.isfinite(loss).all() else 'a loss that is not finite'}."
        )


def _eval_shape(model: Any, head: Any, config: dict[str, Any], name: str) -> None:
    """The eval output's shapes equal those of the same model with the stock head (its base class)."""
    stock_config = copy.deepcopy(config)
    for row in stock_config["head"]:
        if row[2] == type(head).__name__:
            row[2], row[3] = head.yolopatch_head, stock_args(head, row[3])
    try:
        stock = type(model)(stock_config, ch=3, verbose=False)
    except Exception as exc:  # the base class refuses the row's args
        raise YolopatchError(
            f"{name}: the same model with ultralytics' own {head.yolopatch_head} in {type(head).__name__}'s place "
            f"does not build ({type(exc).__name__}: {exc}), so the eval output cannot be compared."
        ) from None
    ours, theirs = eval_shapes(model, stock)
    if ours != theirs:
        raise YolopatchError(
            f"{name}: {type(head).__name__}'s eval output has shapes {ours}; ultralytics' own "
            f"{head.yolopatch_head} gives {theirs} here, which its val, predict and export read; {_FIX}."
        )
