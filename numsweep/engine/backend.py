"""The array module of an array: NumPy, or CuPy for CuPy arrays, so one code path serves both.

Code written against ``xp = array_module(a)`` uses only what NumPy and CuPy share
(``xp.matmul(..., out=)``, ufuncs with ``out=``, ``xp.empty``); CuPy is imported only by
:func:`device_module` (``device=cuda``), so the NumPy path pays one attribute lookup and
nothing else.

Devices (the ``device`` trial parameter): ``cpu`` (NumPy, the default) and ``cuda`` (CuPy on
the current GPU; ``CUDA_VISIBLE_DEVICES`` chooses which). :func:`device_module` gives a
device's array module or a :class:`DeviceError` saying in one line what is missing.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import numpy as np

from numsweep.defaults import DEVICES
from numsweep.errors import NumsweepError

GPU_INSTALL = "pip install 'numsweep[gpu]'"


class DeviceError(NumsweepError, ValueError):
    """``device=cuda`` cannot run here: CuPy is not installed, or it finds no GPU."""


def array_module(a: Any) -> ModuleType:
    """``cupy`` for a CuPy array, else ``numpy`` (CuPy arrays name their module ``cupy...``)."""
    if type(a) is np.ndarray:  # the common case first: called several times per update
        return np
    module = type(a).__module__
    if module.startswith("cupy"):
        return sys.modules["cupy"]
    return np


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy array of ``a`` (a copy from the device for CuPy arrays)."""
    get = getattr(a, "get", None)
    return np.asarray(a if get is None or isinstance(a, np.ndarray) else get())


def device_module(device: str) -> ModuleType:
    """The array module of ``device``: NumPy for ``cpu``, CuPy for ``cuda`` once it is known
    to see a GPU; a one-line :class:`DeviceError` when CuPy is missing or sees no GPU."""
    if device == "cpu":
        return np
    if device != "cuda":
        raise DeviceError(f"device={device!r} is invalid: expected one of {', '.join(DEVICES)}")
    try:
        import cupy
    except ImportError as exc:
        raise DeviceError(f"device=cuda needs CuPy, which is not installed ({GPU_INSTALL}; "
                          f"for CUDA 13: pip install cupy-cuda13x): {exc}") from None
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # CUDARuntimeError: no driver, no device
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DeviceError(f"device=cuda needs a CUDA GPU, and CuPy finds none ({first})"
                          ) from None
    if count < 1:
        raise DeviceError("device=cuda needs a CUDA GPU, and CuPy finds none "
                          "(CUDA_VISIBLE_DEVICES may hide them)")
    return cupy


def free_bytes(device: str) -> int:
    """Memory free for a group on ``device``: the current GPU's free memory for ``cuda``
    (CuPy's pool counts as used only for what it holds), the available RAM for ``cpu``."""
    if device == "cuda":
        xp = device_module(device)
        free, _ = xp.cuda.runtime.memGetInfo()
        pool = xp.get_default_memory_pool()
        return int(free) + int(pool.free_bytes())
    import os

    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not POSIX: assume 4 GiB
        return 4 << 30


def to_device(a: Any, xp: ModuleType) -> Any:
    """``a`` as an array of ``xp`` (a copy to the device for CuPy; ``a`` itself for NumPy)."""
    if xp is np:
        return to_numpy(a)
    return xp.asarray(a)


_DEVICE_COPIES: dict[tuple[int, str], tuple[Any, Any]] = {}
DEVICE_COPIES_MAX = 32
"""Host arrays whose device copies a process keeps (a split's arrays and patch matrices)."""


def device_copy(a: Any, xp: ModuleType) -> Any:
    """``a`` on ``xp``'s device, copied once per process for each host array: a worker's
    split and patch matrices (the same arrays for every group it trains) go to the GPU once.
    NumPy, or an array already there: ``a`` itself."""
    if xp is np or array_module(a) is xp:
        return a
    key = (id(a), xp.__name__)
    hit = _DEVICE_COPIES.get(key)
    if hit is not None and hit[0] is a:
        return hit[1]
    if len(_DEVICE_COPIES) >= DEVICE_COPIES_MAX:
        _DEVICE_COPIES.pop(next(iter(_DEVICE_COPIES)))
    copy = xp.asarray(a)
    _DEVICE_COPIES[key] = (a, copy)  # the host array kept: its id stays its own
    return copy
