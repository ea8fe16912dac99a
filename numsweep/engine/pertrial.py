"""Per-trial values: K trials' hyperparameters broadcast against trial-stacked arrays.

A group of K trials holds every parameter with a leading trial axis (K, ...), so a
per-trial value is a (K, 1, 1) array (:func:`per_trial`), or a :class:`PerTrial` that
behaves like a lone trial's Python float in arithmetic and rounds to the array's dtype
where it meets one. :func:`trial_values` is the value as K = 1 takes it: the Python float
itself (NumPy rounds it to the array's dtype, and a lone trial pays no per-call array).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from numsweep.engine.backend import array_module


def per_trial(values: Sequence[float], dtype: np.dtype | type, xp: Any = np) -> Any:
    """Per-trial scalars as a (K, 1, 1) array of ``dtype``: each value rounded to ``dtype``
    exactly as a lone trial's Python float is when it meets an array of that dtype."""
    return xp.asarray(np.asarray(values, dtype=np.float64).astype(dtype).reshape(-1, 1, 1))


class PerTrial:
    """Per-trial hyperparameters (K, 1, 1) that behave like the lone trial's Python floats.

    Arithmetic with Python numbers (``1 - rho``, ``1 + mu``, ``-mu``) stays in float64, and a
    value meeting an array in a ufunc (``v *= mu``, ``np.multiply(g, 1 - b1, out=buf)``) is
    first rounded to that array's dtype, as NumPy rounds a Python float: so the optimizers'
    one ``step`` serves lone trials (floats) and groups (PerTrial) with the same numbers.
    Derived values and their roundings are cached (they are the same every update).
    """

    def __init__(self, values: Any) -> None:
        self.values = np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)
        self._derived: dict[tuple[str, float], PerTrial] = {}
        self._cast: dict[Any, Any] = {}

    def _derive(self, op: str, other: float) -> PerTrial:
        out = self._derived.get((op, other))
        if out is None:
            v = self.values
            value = {"rsub": lambda: other - v, "sub": lambda: v - other,
                     "add": lambda: v + other, "mul": lambda: v * other,
                     "rdiv": lambda: other / v, "div": lambda: v / other}[op]()
            out = self._derived[(op, other)] = PerTrial(value)
        return out

    def __rsub__(self, other: float) -> PerTrial:
        return self._derive("rsub", other)

    def __sub__(self, other: float) -> PerTrial:
        return self._derive("sub", other)

    def __add__(self, other: float) -> PerTrial:
        return self._derive("add", other)

    __radd__ = __add__

    def __mul__(self, other: float) -> PerTrial:
        return self._derive("mul", other)

    __rmul__ = __mul__

    def __neg__(self) -> PerTrial:
        return self._derive("mul", -1.0)

    def __truediv__(self, other: float) -> PerTrial:
        return self._derive("div", other)

    def __rtruediv__(self, other: float) -> PerTrial:
        return self._derive("rdiv", other)

    def __getitem__(self, idx: Any) -> PerTrial:
        return PerTrial(self.values[idx])

    def __len__(self) -> int:
        return len(self.values)

    def as_array(self, dtype: Any, xp: Any = np) -> Any:
        """The values rounded to ``dtype`` (cached)."""
        arr = self._cast.get((dtype, xp))
        if arr is None:
            arr = self._cast[(dtype, xp)] = xp.asarray(self.values.astype(dtype))
        return arr

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        arrays = [a for a in (*inputs, *kwargs.get("out", ())) if hasattr(a, "dtype")
                  and not isinstance(a, PerTrial)]
        dtype = arrays[0].dtype if arrays else np.float64
        xp = array_module(arrays[0]) if arrays else np
        args = [a.as_array(dtype, xp) if isinstance(a, PerTrial) else a for a in inputs]
        return getattr(ufunc, method)(*args, **kwargs)


def trial_values(values: Any, dtype: Any, xp: Any = np) -> Any:
    """Per-trial values (K,) as what broadcasts against (K, ...) arrays of ``dtype``: for
    K = 1 the Python float, else :func:`per_trial`'s (K, 1, 1) array."""
    if len(values) == 1:
        return float(values[0])
    return per_trial(values, dtype, xp)


def trial_hp(values: Any) -> Any:
    """Per-trial hyperparameters (K,) as the update rules take them: a Python float for
    K = 1, a :class:`PerTrial` else."""
    return float(values[0]) if len(values) == 1 else PerTrial(values)


def hp_values(value: Any) -> Any:
    """A hyperparameter's float64 value(s): the float, or a PerTrial's (K, 1, 1) values."""
    return value.values if isinstance(value, PerTrial) else value


def operand(value: Any, like: Any) -> Any:
    """A value as ``like``'s ufuncs take it: a float or an array as it is, per-trial values
    (:class:`PerTrial`) as an array of ``like``'s dtype on its device (NumPy would round
    them itself; CuPy's ufuncs take only arrays and scalars)."""
    as_array = getattr(value, "as_array", None)
    return value if as_array is None else as_array(like.dtype, array_module(like))
