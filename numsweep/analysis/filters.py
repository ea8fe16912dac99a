"""A kept network's first-layer filters drawn as images (the figure of the course reports).

- the patchify ConvNet: each of the nf filters (f*f*C values, in the patch order
  (row, column, channel) of ``layers.patchify``) as an f x f x C image; with several patch
  sizes, one row of panels per size;
- the three-layer ConvNet: its filter_size x filter_size x C filters the same way;
- the MLP: each hidden unit's row of the first weight matrix W1 (D, h) as an image of the
  data's shape (32x32x3 for CIFAR-10, 28x28x1 for Fashion-MNIST).

Each filter is scaled to [0, 1] on its own (min to max), as the course shows them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from numsweep.analysis.selection import ChartError

MAX_FILTERS = 100
"""At most this many filters per patch size are drawn (the MLP's first ones)."""

IMAGE_SHAPES = {3072: (32, 32, 3), 784: (28, 28, 1)}
"""Input sizes of the MLP and the image shapes they come from."""


def filter_data(spec: Mapping[str, Any], params: Mapping[str, np.ndarray],
                image_shape: tuple[int, int, int] | None = None
                ) -> list[tuple[str, np.ndarray]]:
    """(title, filters (n, h, w, c) scaled to [0, 1]) for each first-layer block of a kept
    network with ``spec`` (a TrialSpec's dict) and ``params`` (the lone layout). A title
    starts with the weight's name and shape as ``numsweep trial weights`` prints them
    (``"W1 3072x50: 50 rows as 32x32x3 images"``) and says when only the first
    :data:`MAX_FILTERS` are drawn."""
    model = spec["model"]
    blocks: list[tuple[str, np.ndarray]] = []
    if model == "mlp":
        w1 = params["W1"]
        shape = image_shape or IMAGE_SHAPES.get(w1.shape[0])
        if shape is None or math.prod(shape) != w1.shape[0]:
            raise ChartError(f"cannot draw MLP rows of {w1.shape[0]} inputs as images "
                             "(give the image shape)")
        blocks.append((f"{_shape('W1', w1)}: {_drawn(w1.shape[1], 'rows')} as "
                       f"{shape[0]}x{shape[1]}x{shape[2]} images", w1.T.reshape(-1, *shape)))
    else:
        names = sorted((n for n in params if n.startswith("F")), key=lambda n: (len(n), n))
        for name in names:
            w = params[name]                 # (f*f*C, nf)
            channels = image_shape[2] if image_shape else _channels(w.shape[0])
            f = math.isqrt(w.shape[0] // channels)
            blocks.append((f"{_shape(name, w)}: {_drawn(w.shape[1], 'filters')} "
                           f"{f}x{f}x{channels}", w.T.reshape(-1, f, f, channels)))
    return [(title, _scaled(a[:MAX_FILTERS])) for title, a in blocks]


def filter_title(model: str, *, trial_id: int | None = None, sweep: str = "",
                 source: str = "") -> str:
    """The figure's title: the sweep and trial the network comes from (or its file)."""
    where = (f"sweep {sweep}, " if sweep else "") + (f"trial {trial_id}" if trial_id is not None
                                                     else source)
    return f"{where}: {model}" if where else model


def _shape(name: str, w: np.ndarray) -> str:
    """``W1 3072x50``, as ``numsweep trial weights`` writes a weight's shape."""
    return f"{name} {'x'.join(map(str, w.shape))}"


def _drawn(n: int, what: str) -> str:
    return f"{n} {what}" if n <= MAX_FILTERS else f"the first {MAX_FILTERS} of {n} {what}"


def _channels(d: int) -> int:
    """3 (colour) when d = f*f*3 for a whole f, else 1."""
    return 3 if d % 3 == 0 and math.isqrt(d // 3) ** 2 == d // 3 else 1


def _scaled(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    low = a.min(axis=(1, 2, 3), keepdims=True)
    span = a.max(axis=(1, 2, 3), keepdims=True) - low
    return (a - low) / np.where(span > 0, span, 1)


def draw_filters(blocks: list[tuple[str, np.ndarray]], title: str = "") -> Any:
    """One grid of image panels per block; returns the Axes (for ``figures.save``)."""
    import matplotlib.pyplot as plt

    cols = min(10, max(len(a) for _, a in blocks))
    rows = [math.ceil(len(a) / cols) for _, a in blocks]
    fig, axes = plt.subplots(sum(rows), cols, figsize=(1.1 * cols, 1.1 * sum(rows) + 0.6),
                             squeeze=False)
    r0 = 0
    for (name, filters), n_rows in zip(blocks, rows, strict=True):
        for k in range(n_rows * cols):
            ax = axes[r0 + k // cols][k % cols]
            ax.set_axis_off()
            if k < len(filters):
                img = filters[k]
                ax.imshow(img[:, :, 0] if img.shape[2] == 1 else img,
                          cmap="gray" if img.shape[2] == 1 else None, interpolation="nearest")
        axes[r0][0].set_title(name, loc="left", fontsize=9)
        r0 += n_rows
    if title:
        fig.suptitle(title, fontsize=10)
    return list(axes.ravel())
