"""A stand-in for CuPy on machines without a GPU: NumPy arrays that behave like device arrays.

:class:`DeviceArray` is a NumPy array whose type says it is CuPy's (``array_module`` then
returns ``sys.modules["cupy"]``, the :class:`FakeCupy` module). Like CuPy it refuses what a
real device array refuses, so the engine's array code is checked for it on the CPU:

- a host (NumPy) array meeting a device array in a ufunc, an index or an assignment;
- a ``numpy.*`` function called on a device array (the code must use its ``xp``);
- a group's per-trial values (``pertrial.PerTrial``) handed to a ufunc unconverted.

It counts copies: ``to_host`` (``.get()``), ``syncs`` (``float()``, ``int()``, ``bool()`` of a
device value), ``to_device`` (``asarray`` of host data).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np


class Counts:
    def __init__(self) -> None:
        self.to_host = 0
        self.syncs = 0
        self.to_device = 0


COUNTS = Counts()


def _is_host(a: Any) -> bool:
    return (type(a) is np.ndarray) or hasattr(a, "as_array")


def _check(args: Any, what: str) -> None:
    for a in args:
        if isinstance(a, (list, tuple)):
            _check(a, what)
        elif _is_host(a):
            raise TypeError(f"{what}: a host {type(a).__name__} met a device array")


def _host(a: Any) -> Any:
    if isinstance(a, DeviceArray):
        return a.view(np.ndarray)
    if isinstance(a, (list, tuple)):
        return type(a)(_host(v) for v in a)
    return a


def _wrap(r: Any) -> Any:
    if isinstance(r, DeviceArray):
        return r
    if isinstance(r, np.ndarray):
        return r.view(DeviceArray)
    if isinstance(r, np.generic):
        return np.asarray(r).view(DeviceArray)
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


class DeviceArray(np.ndarray):
    """A NumPy array posing as a CuPy array."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out", ())
        _check(inputs, ufunc.__name__)
        _check(out, ufunc.__name__)
        if "where" in kwargs:
            _check((kwargs["where"],), ufunc.__name__)
            kwargs["where"] = _host(kwargs["where"])
        if out:
            kwargs["out"] = tuple(_host(o) for o in out)
        result = getattr(ufunc, method)(*(_host(a) for a in inputs), **kwargs)
        if out:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func: Any, types_: Any, args: Any, kwargs: Any) -> Any:
        raise TypeError(f"numpy.{func.__name__} called on a device array (use its xp)")

    def __getitem__(self, idx: Any) -> Any:
        _check(idx if isinstance(idx, tuple) else (idx,), "index")
        return _wrap(self.view(np.ndarray)[_host(idx)])

    def __setitem__(self, idx: Any, value: Any) -> None:
        _check(idx if isinstance(idx, tuple) else (idx,), "index")
        _check((value,), "assignment")
        self.view(np.ndarray)[_host(idx)] = _host(value)

    def get(self) -> np.ndarray:
        COUNTS.to_host += 1
        return np.array(self.view(np.ndarray))

    def __float__(self) -> float:
        COUNTS.syncs += 1
        return float(self.view(np.ndarray))

    def __int__(self) -> int:
        COUNTS.syncs += 1
        return int(self.view(np.ndarray))

    def __bool__(self) -> bool:
        COUNTS.syncs += 1
        return bool(self.view(np.ndarray))

    def item(self, *args: Any) -> Any:
        COUNTS.syncs += 1
        return self.view(np.ndarray).item(*args)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        raise TypeError("implicit conversion of a device array to NumPy (use .get())")


DeviceArray.__module__ = "cupy._fake"


def _device_function(func: Any, name: str) -> Any:
    def call(*args: Any, **kwargs: Any) -> Any:
        _check(args, name)
        _check(tuple(kwargs.values()), name)
        return _wrap(func(*(_host(a) for a in args),
                          **{k: _host(v) for k, v in kwargs.items()}))
    return call


class _Generator:
    def __init__(self, seed: Any) -> None:
        self._rng = np.random.default_rng(seed)

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        if out is not None:
            self._rng.random(dtype=dtype, out=_host(out))
            return out
        return _wrap(self._rng.random(size, dtype=dtype))


class FakeCupy(types.ModuleType):
    """``import cupy`` while this sits in ``sys.modules``: NumPy's functions on DeviceArrays."""

    def __init__(self, devices: int = 1, free: int = 8 << 30) -> None:
        super().__init__("cupy")
        self.ndarray = DeviceArray
        self.random = types.SimpleNamespace(default_rng=_Generator)
        runtime = types.SimpleNamespace(getDeviceCount=lambda: devices,
                                        memGetInfo=lambda: (free, 2 * free))
        self.cuda = types.SimpleNamespace(runtime=runtime)
        self.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)

    def asarray(self, a: Any, dtype: Any = None) -> DeviceArray:
        if not isinstance(a, DeviceArray):
            COUNTS.to_device += 1
        return np.array(_host(a), dtype=dtype).view(DeviceArray)

    def __getattr__(self, name: str) -> Any:
        value = getattr(np, name)
        if callable(value) and not isinstance(value, type):
            return _device_function(value, name)
        return value
