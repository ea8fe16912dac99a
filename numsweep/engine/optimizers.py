"""Update rules. Hyperparameters live on the optimizer; per-parameter state in ``state``.

Every optimizer has the same signature: ``step(params, grads, lr)`` updates ``params`` in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SGD:
    """Plain mini-batch gradient descent: w -= lr * dw."""

    state: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             lr: float) -> None:
        for name, w in params.items():
            w -= lr * grads[name]


def make_optimizer(name: str) -> SGD:
    if name == "sgd":
        return SGD()
    raise ValueError(f"unknown optimizer {name!r}")
