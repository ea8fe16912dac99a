"""The array module of an array: NumPy, or CuPy for CuPy arrays, so one code path serves both.

Code written against ``xp = array_module(a)`` uses only what NumPy and CuPy share
(``xp.matmul(..., out=)``, ufuncs with ``out=``, ``xp.empty``); CuPy is never imported here,
so the NumPy path pays one attribute lookup and nothing else.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np


def array_module(a: Any) -> ModuleType:
    """``cupy`` for a CuPy array, else ``numpy`` (CuPy arrays name their module ``cupy...``)."""
    module = type(a).__module__
    if module.startswith("cupy"):
        import sys

        return sys.modules["cupy"]
    return np


def to_numpy(a: Any) -> np.ndarray:
    """A NumPy array of ``a`` (a copy from the device for CuPy arrays)."""
    get = getattr(a, "get", None)
    return np.asarray(a if get is None or isinstance(a, np.ndarray) else get())
