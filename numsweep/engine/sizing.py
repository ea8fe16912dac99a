"""Group sizing: how many trials of a spec fit in a device's free memory.

A fused group (``group.py``) holds, per trial, its parameters, their gradients, the
optimizer's state and the activations of one batch (or of one evaluation chunk, whichever
is larger: the buffers are shared by name); beside them, once per group, the batch's patch
matrices. :func:`trial_bytes` and :func:`shared_bytes` estimate these from the spec alone
(every buffer the fused networks may take, each counted once; on the CPU, tested against
the memory a group takes: between 1x and 2x of it);
:func:`max_group_size` divides a device's free memory by them. The data set itself (the
split and its patch matrices) lives on the device once per process and is not counted:
pass the memory free after it is loaded (``backend.free_bytes``).
"""

from __future__ import annotations

import math
import os

import numpy as np

from numsweep.engine.batch_schedules import largest_batch
from numsweep.engine.build import network_shape
from numsweep.engine.runplan import eval_chunk
from numsweep.engine.spec import SpecError, TrialSpec

OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 2, "nesterov": 2, "adagrad": 2, "rmsprop": 2,
                   "rmsprop_nesterov": 3, "adadelta": 4, "adam": 3}
"""Arrays of a parameter's shape each optimizer keeps (SGD updates from the scaled gradient)."""

MAX_GROUP = 256
"""The largest group :func:`max_group_size` proposes (more gains little per trial)."""

HEADROOM = 0.8
"""The share of the free memory a group may plan to use (allocator slack, temporaries)."""


def _rows(spec: TrialSpec, k: int) -> int:
    """Images whose activations a trial's buffers hold: a batch or an evaluation chunk."""
    return max(largest_batch(spec) * spec.aug_copies, eval_chunk(k))


def param_count(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int) -> int:
    """The parameters of one trial of ``spec`` (:func:`build.network_shape`)."""
    return network_shape(spec, image_shape, num_classes).param_count


def _activation_values(spec: TrialSpec, image_shape: tuple[int, int, int],
                       num_classes: int) -> tuple[int, int]:
    """(values of the dtype, bytes of masks) one image takes in one trial's buffers."""
    d = math.prod(image_shape)
    shape = network_shape(spec, image_shape, num_classes)
    values = 3 * num_classes                       # scores, and two loss temporaries
    masks = 0
    if spec.dropout_input:
        # the trial's own input (several patch sizes: their patch matrices side by side,
        # one image's values per size) and, for the ConvNet, its patches patch-major and
        # transposed (and each size's patches apart)
        branches = len(spec.patches) if spec.model == "convnet" else 1
        copies = 1 if spec.model == "mlp" else 3 + (branches > 1)
        values += copies * branches * d
        masks += 5 * branches * d                  # float32 draws and the keep mask
    if spec.model != "mlp":
        values += 2 * shape.conv_outputs           # the convolution's output and gradient
        masks += shape.conv_outputs                # its activation mask
    for width in shape.hidden:
        values += 3 * width                        # output, gradient, activation scratch
        masks += width + (5 * width if spec.dropout else 0)
    return values, masks


def trial_bytes(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int,
                k: int = MAX_GROUP) -> int:
    """Bytes one trial of a group of ``k`` adds on ``spec.device``: parameters, gradients,
    optimizer state, its activations (:func:`_rows` images of them), and the copies made
    while the group is built (on the CPU the lone network and two stacked copies; on a GPU
    one transient copy, the rest stays on the host)."""
    item = np.dtype(spec.dtype).itemsize
    p = param_count(spec, image_shape, num_classes)
    building = 3 if spec.device == "cpu" else 1
    state = (2 + OPTIMIZER_SLOTS[spec.optimizer] + building) * p * item
    if spec.model == "convnet" and len(spec.patches) > 1:
        state += p * item                          # the hidden layer's gradient in parts
    values, masks = _activation_values(spec, image_shape, num_classes)
    return state + _rows(spec, k) * (values * item + masks)


def shared_bytes(spec: TrialSpec, image_shape: tuple[int, int, int]) -> int:
    """Bytes a group holds once: the batch (augmented, prepared) and its patch matrices in
    the feature-major layout (two copies); for ``convnet3`` the batch and the matrix of its
    filter windows (one row per convolution output), which every trial's filters meet."""
    item = np.dtype(spec.dtype).itemsize
    rows = largest_batch(spec) * spec.aug_copies
    d = math.prod(image_shape)
    if spec.model == "convnet3":
        conv = network_shape(spec, image_shape, 1).layers[0]  # the classes do not matter here
        return rows * item * (2 * d + conv.positions * conv.rows)
    return rows * d * item * (6 if spec.model == "convnet" else 2)


def max_group_size(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int,
                   free: int, *, limit: int = MAX_GROUP, headroom: float = HEADROOM) -> int:
    """The most trials of ``spec`` that train as one group in ``free`` bytes (at least 1,
    at most ``limit``): ``headroom * free`` less :func:`shared_bytes`, divided by
    :func:`trial_bytes`. The runner sizes a stage's groups with it on a GPU:
    ``max_group_size(spec, image_shape, classes, backend.free_bytes("cuda"))``."""
    budget = headroom * free - shared_bytes(spec, image_shape)
    k = limit
    while k > 1 and k * trial_bytes(spec, image_shape, num_classes, k) > budget:
        k = max(1, min(k - 1, int(budget // trial_bytes(spec, image_shape, num_classes, k))))
    return k


class NetworkTooLarge(SpecError):
    """A network that cannot fit in this machine's memory (its sizes, its batch)."""


def machine_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def network_bytes(spec: TrialSpec, image_shape: tuple[int, int, int], num_classes: int) -> int:
    """Bytes one trial of ``spec`` needs to train alone (:func:`trial_bytes` and
    :func:`shared_bytes`; for ``convnet3`` a like count of its parameters and one batch's
    activations), from the spec alone: nothing is allocated."""
    if spec.model != "convnet3":
        return trial_bytes(spec, image_shape, num_classes, 1) + shared_bytes(spec, image_shape)
    shape = network_shape(spec, image_shape, num_classes)
    conv = shape.layers[0]
    item = np.dtype(spec.dtype).itemsize
    per_image = conv.positions * (conv.rows + 3 * conv.cols) + 3 * spec.nh
    return ((3 + OPTIMIZER_SLOTS[spec.optimizer]) * shape.param_count * item
            + _rows(spec, 1) * per_image * item)


def check_augmentation(spec: TrialSpec, image_shape: tuple[int, int, int]) -> None:
    """``translate`` and ``cutout`` within the images (a shift of more pixels than an image
    has pads it to no purpose, and a huge one cannot be allocated)."""
    h, w = image_shape[:2]
    if spec.translate >= min(h, w):
        raise SpecError(f"translate={spec.translate} is invalid: expected fewer pixels than the "
                        f"{h}x{w} images have ({min(h, w) - 1} at most)")
    if spec.cutout > max(h, w):
        raise SpecError(f"cutout={spec.cutout} is invalid: expected at most {max(h, w)} pixels "
                        f"for {h}x{w} images")


def check_network_memory(spec: TrialSpec, image_shape: tuple[int, int, int],
                         num_classes: int, memory: int | None = None) -> None:
    """A :class:`NetworkTooLarge` when one trial of ``spec`` needs more than this machine's
    memory (``memory`` bytes), before anything is allocated (was: numpy's MemoryError, or
    the machine swapping, on the first array)."""
    memory = memory if memory is not None else machine_memory()
    try:
        need = network_bytes(spec, image_shape, num_classes)
    except ValueError:
        return  # shapes that do not fit the images: building the network says which
    if memory is not None and need > memory:
        sizes = {"mlp": f"hidden={list(spec.hidden)}",
                 "convnet": f"f={spec.f} nf={spec.nf} nh={spec.nh}",
                 "convnet3": f"filter_size={spec.filter_size} nf={spec.nf} nh={spec.nh}"
                 }[spec.model]
        batch = spec.batch_size if spec.batch_schedule == "constant" else spec.b_max
        raise NetworkTooLarge(
            f"model={spec.model} {sizes} with batch {batch} x aug_copies={spec.aug_copies} "
            f"needs about {need / 2**30:,.1f} GB to train, more than this machine's "
            f"{memory / 2**30:,.1f} GB")
