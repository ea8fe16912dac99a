"""Narrowing: a stage's search ranges cut down to where an earlier stage's best trials were."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from numsweep.engine import TrialSpec
from numsweep.sweeps.optuna_bridge import encode
from numsweep.sweeps.spec import ParamSpace


def narrow_space(space: Mapping[str, ParamSpace], top: Sequence[Mapping[str, Any]],
                 source_space: Mapping[str, ParamSpace], widen: float,
                 source: str, available: int | None = None) -> tuple[dict[str, ParamSpace], str]:
    """Narrow each numeric range to the span of the ``top`` trials' values, widened by
    ``widen`` grid steps of ``source_space`` (in log10 units for log ranges); a categorical
    entry keeps the choices the top trials used. A widened end that is not a valid value
    (such as a negative lam) stops at the source range's end, and no end leaves the stage's
    own range (``space``). ``available``: how many complete trials the source had, so that
    the note says when the "best" are all of them.

    Returns the new space and a note saying what was chosen and why.
    """
    if not top:
        return dict(space), f"no complete trials in {source}: ranges unchanged"
    out: dict[str, ParamSpace] = {}
    notes = []
    for name, p in space.items():
        values = [t[n] for t in top for n in p.names if n in t] if not p.tied else \
            [[t[n] for n in p.names] for t in top if all(n in t for n in p.names)]
        if not values:
            out[name] = p
            continue
        if p.type == "categorical":
            kept = tuple(c for c in p.choices
                         if any(_same(encode(c), encode(v)) for v in values))
            out[name] = ParamSpace(name, p.type, choices=kept or p.choices, when=p.when)
            notes.append(f"{name}: choices of the best {len(top)} of {source}: "
                         f"{[encode(c) for c in out[name].choices]}")
            continue
        src = source_space.get(name, p)
        assert src.low is not None and src.high is not None
        to = (lambda v: math.log10(v)) if p.log else (lambda v: float(v))
        back = (lambda u: 10.0 ** u) if p.log else (lambda u: u)
        step = src.grid_step()
        why_step = "grid step"
        if step is None:
            step = (to(src.high) - to(src.low)) / 10
            why_step = "tenth of the range"
        lo_u, hi_u = min(to(v) for v in values), max(to(v) for v in values)
        low, high = back(lo_u - widen * step), back(hi_u + widen * step)
        low = low if _valid(p, low) else src.low
        high = high if _valid(p, high) else src.high
        if p.type == "int":
            low, high = math.floor(low), math.ceil(high)
        # never outside the stage's own range: past it lie values nobody asked for
        assert p.low is not None and p.high is not None
        clipped = low < p.low or high > p.high
        low, high = max(low, p.low), min(high, p.high)
        out[name] = ParamSpace(name, p.type, low=low, high=high, log=p.log, grid=p.grid,
                               when=p.when)
        unit = "log10 " if p.log else ""
        span = f"[{min(values):.3g}, {max(values):.3g}]"
        kept = ""
        if low <= p.low and high >= p.high:
            kept = " = the whole range, not narrowed"
        elif clipped:
            kept = f" (kept inside space.{name} [{p.low:.3g}, {p.high:.3g}])"
        notes.append(f"{name}: best {len(top)} of {source} span {span}, widened by {widen:g} "
                     f"{why_step} ({widen * step:.3g} {unit}units) -> [{low:.3g}, {high:.3g}]"
                     f"{' (log)' if p.log else ''}{kept}")
    if available is not None and available <= len(top):
        notes.insert(0, f"the best {len(top)} of {source} are all its {available} complete "
                        "trials")
    return out, "; ".join(notes)


def _same(a: Any, b: Any) -> bool:
    return a == b


def _valid(p: ParamSpace, value: float) -> bool:
    if not math.isfinite(value) or (p.log and value <= 0):
        return False
    try:
        for n in p.names:
            TrialSpec.from_mapping({n: round(value) if p.type == "int" else value})
    except ValueError:
        return False
    return True
