"""Scratch arrays reused across training updates, so the training loop allocates nothing per step.

A :class:`Workspace` hands out named arrays of a requested shape. Each name owns one flat
buffer that grows when a larger shape is asked for; smaller shapes are views of its start
(contiguous), so a schedule of varying batch sizes shares one buffer per name. The arrays
are overwritten by the next request of the same name: copy what must outlive it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class Workspace:
    """Named, reusable scratch arrays of one default dtype."""

    def __init__(self, dtype: np.dtype | type, xp: Any = np) -> None:
        self.dtype = np.dtype(dtype)
        self.xp = xp  # the array module the buffers come from (numpy, or cupy)
        self._flat: dict[str, np.ndarray] = {}
        self._views: dict[tuple[str, tuple[int, ...]], np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...],
            dtype: np.dtype | type | None = None) -> np.ndarray:
        """The array ``name`` with ``shape`` (uninitialised contents, C-contiguous).

        A name always has the same dtype (``dtype`` on its first request, else the
        workspace's).
        """
        view = self._views.get((name, shape))
        if view is not None:
            return view
        size = math.prod(shape)
        flat = self._flat.get(name)
        if flat is None or flat.size < size:
            dt = self.dtype if dtype is None else np.dtype(dtype)
            flat = self._flat[name] = self.xp.empty(max(size, 1), dt)
            self._views = {k: v for k, v in self._views.items() if k[0] != name}
        view = self._views[(name, shape)] = flat[:size].reshape(shape)
        return view

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._flat.values())
