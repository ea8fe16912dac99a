"""Weight initialisers: draw a (fan_in, fan_out) matrix from an explicit Generator."""

from __future__ import annotations

import numpy as np


def init_weights(kind: str, fan_in: int, fan_out: int, rng: np.random.Generator,
                 dtype: np.dtype | type) -> np.ndarray:
    """``xavier``: N(0, 1/fan_in) as in the course; ``he``: N(0, 2/fan_in) for ReLU nets."""
    scale = {"xavier": 1.0, "he": 2.0}[kind]
    return (rng.standard_normal((fan_in, fan_out)) * np.sqrt(scale / fan_in)).astype(dtype)
