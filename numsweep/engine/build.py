"""A spec's network: :func:`build_network` builds the lone network of ``spec.model``."""

from __future__ import annotations

import numpy as np

from numsweep.engine.networks import MLP, ConvNet3, Network, PatchConvNet
from numsweep.engine.spec import TrialSpec


def build_network(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int,
                  rng: np.random.Generator) -> Network:
    """The network of ``spec.model``; a ValueError when its shapes do not fit the images."""
    common = dict(rng=rng, init=spec.init, dropout=spec.dropout,
                  dropout_input=spec.dropout_input, activation=spec.activation,
                  leaky_slope=spec.leaky_slope, loss=spec.loss, dtype=np.dtype(spec.dtype))
    if spec.model == "mlp":
        return MLP(int(np.prod(image_shape)), spec.hidden, num_classes, **common)
    if spec.model == "convnet3":
        return ConvNet3(image_shape, spec.nf, spec.filter_size, spec.nh, num_classes,
                        stride=spec.conv_stride, pad=spec.conv_pad, **common)
    return PatchConvNet(image_shape, spec.f, spec.nf, spec.nh, num_classes, **common)
