"""What the head proofs of every family share (#30): a forward's output as nested shapes, compared with the
stock head's, and a training step that leaves the model as it was."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any


def output_shapes(value: Any) -> Any:
    """The nested shapes of a forward's output (tensors, lists, tuples, dicts)."""
    if hasattr(value, "shape"):
        return tuple(value.shape)
    if isinstance(value, dict):
        return {key: output_shapes(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [output_shapes(item) for item in value]
    return type(value).__name__


@contextmanager
def training_step(model: Any) -> Iterator[None]:
    """The model in train mode for one step; afterwards its weights and BatchNorm statistics (the train-mode
    forward moved them), gradients and mode as they were."""
    was, state = model.training, copy.deepcopy(model.state_dict())
    model.train()
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)
        model.train(was)


def eval_shapes(model: Any, stock: Any) -> tuple[Any, Any]:
    """The eval output's shapes of the model and of the same model with its stock head, on one image (the
    model's mode as it was afterwards)."""
    import torch

    image = torch.rand(1, 3, 64, 64)
    was = model.training
    with torch.no_grad():
        ours, theirs = output_shapes(model.eval()(image)), output_shapes(stock.eval()(image))
    model.train(was)
    return ours, theirs


def stock_args(head: Any, args: Sequence[Any]) -> list[Any]:
    """A head row's args for its base class: without those of the parameters the head adds (a fork's
    `hidc`), found by comparing the two constructors' parameters."""
    base = next(c for c in type(head).__mro__ if c.__name__ == head.yolopatch_head)
    theirs = set(inspect.signature(base).parameters)
    ours = list(inspect.signature(type(head)).parameters)
    added = {i for i, name in enumerate(ours) if name not in theirs}
    return [arg for i, arg in enumerate(args) if i not in added]
