"""A spec's network: :func:`build_network` builds the lone network of ``spec.model``;
:func:`network_shape` gives its layers' shapes from the spec alone (nothing allocated), for
the memory and time estimates (``sizing.py``, ``sweeps/budget.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numsweep.engine.layers import conv_output_size
from numsweep.engine.networks import MLP, ConvNet3, Network, PatchConvNet
from numsweep.engine.spec import TrialSpec


def conv3_pad(spec: TrialSpec) -> int:
    """The ConvNet3's zero padding: ``conv_pad``, unset: the image size kept at stride 1."""
    return spec.conv_pad if spec.conv_pad is not None else (spec.filter_size - 1) // 2


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
                        stride=spec.conv_stride, pad=conv3_pad(spec), **common)
    return PatchConvNet(image_shape, spec.f, spec.nf, spec.nh, num_classes, **common)


@dataclass(frozen=True)
class Layer:
    """One weight matrix (rows, cols) with its bias (cols,), applied at ``positions`` places
    of each image (a convolution's outputs; 1 for an affine layer)."""

    weight: str
    bias: str
    rows: int
    cols: int
    positions: int = 1

    @property
    def conv(self) -> bool:
        return self.weight.startswith("F")


@dataclass(frozen=True)
class NetworkShape:
    """The layers of a spec's network, input to output."""

    layers: tuple[Layer, ...]

    @property
    def params(self) -> dict[str, tuple[int, ...]]:
        """Each parameter's shape, as the lone network holds it."""
        out: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            out[layer.weight], out[layer.bias] = (layer.rows, layer.cols), (layer.cols,)
        return out

    @property
    def param_count(self) -> int:
        return sum(math.prod(shape) for shape in self.params.values())

    @property
    def forward_macs(self) -> int:
        """Multiply-adds of one image's forward pass (the products)."""
        return sum(layer.positions * layer.rows * layer.cols for layer in self.layers)

    @property
    def conv_outputs(self) -> int:
        """Values the convolutions put out per image."""
        return sum(layer.positions * layer.cols for layer in self.layers if layer.conv)

    @property
    def hidden(self) -> tuple[int, ...]:
        """The widths of the hidden affine layers."""
        return tuple(layer.cols for layer in self.layers[:-1] if not layer.conv)


def network_shape(spec: TrialSpec, image_shape: tuple[int, int, int],
                  num_classes: int) -> NetworkShape:
    """The layers :func:`build_network` builds for ``spec`` (a ValueError from the engine's
    :func:`layers.conv_output_size` when a ConvNet3's convolution does not fit)."""
    h, w, c = image_shape
    if spec.model == "mlp":
        dims = (h * w * c, *spec.hidden, num_classes)
        return NetworkShape(tuple(Layer(f"W{i + 1}", f"b{i + 1}", dims[i], dims[i + 1])
                                  for i in range(len(dims) - 1)))
    if spec.model == "convnet3":
        pad = conv3_pad(spec)
        ho = conv_output_size(h, spec.filter_size, spec.conv_stride, pad)
        wo = conv_output_size(w, spec.filter_size, spec.conv_stride, pad)
        nf = spec.nf if isinstance(spec.nf, int) else max(spec.nf)
        convs = (Layer("F", "bF", spec.filter_size ** 2 * c, nf, ho * wo),)
        into_hidden = (ho // 2) * (wo // 2) * nf
    else:
        multi = not isinstance(spec.f, int)
        convs = tuple(Layer(f"F{i + 1}" if multi else "F", f"bF{i + 1}" if multi else "bF",
                            f * f * c, nf, (h // f) * (w // f))
                      for i, (f, nf) in enumerate(spec.patches))
        into_hidden = sum(conv.positions * conv.cols for conv in convs)
    return NetworkShape((*convs, Layer("W1", "b1", into_hidden, spec.nh),
                         Layer("W2", "b2", spec.nh, num_classes)))
