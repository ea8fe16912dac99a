"""A lone network the fused networks cannot stack, trained as a group of one: it shows the
:class:`fused.FusedNet` interface (parameters with a leading trial axis of 1, views of the
network's own) and steps through the network's reference layers, its ``loss``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from numsweep.engine.fused import FusedNet, fuse
from numsweep.engine.networks import Network


class LoneNet:
    """One reference network as a group of one (on the CPU only)."""

    k = 1

    def __init__(self, net: Network) -> None:
        self.net = net
        self.params = {name: p[None] for name, p in net.params.items()}
        self.weight_names: tuple[str, ...] = net.weight_names  # type: ignore[attr-defined]
        self.loss_name: str = net.loss_name  # type: ignore[attr-defined]

    def to_device(self, xp: Any, seed: int) -> LoneNet:
        if xp is not np:
            raise ValueError(f"{type(self.net).__name__} trains on the CPU only")
        return self

    def prepare(self, images: np.ndarray) -> np.ndarray:
        return self.net.prepare(images)

    def select(self, keep: Sequence[int]) -> None:
        """A group of one keeps its trial or is done: nothing to select."""

    def lone_param(self, name: str, a: Any) -> Any:
        return a

    def scores(self, x: np.ndarray) -> np.ndarray:
        return self.net.scores(x)[None]

    def train_step(self, x: np.ndarray, y: np.ndarray, *, eps: np.ndarray,
                   rngs: Sequence[np.random.Generator], scale: np.ndarray
                   ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The data loss (1,) and its gradients (1, ...); L2 is added by the loop (the same
        sum the network's ``loss`` makes with ``lam``). ``scale`` must be 1."""
        loss, _, grads = self.net.loss(x, y, lam=0.0, eps=float(eps[0]), rng=rngs[0])
        return np.array([loss]), {name: g[None] for name, g in grads.items()}


def group_network(nets: Sequence[Network], dropout: Sequence[float],
                  dropout_input: Sequence[float]) -> FusedNet | LoneNet:
    """The fused network of ``nets`` (:func:`fused.fuse`); one network fuse cannot stack
    as a :class:`LoneNet`."""
    try:
        return fuse(nets, dropout, dropout_input)
    except ValueError:
        if len(nets) != 1:
            raise
        return LoneNet(nets[0])
