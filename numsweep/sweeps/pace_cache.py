"""The measured speed of fused groups (``engine.pace.group_pace``), kept per machine.

One JSON file, ``group_pace.json`` in the user's cache folder (``$NUMSWEEP_CACHE``, else
``$XDG_CACHE_HOME/numsweep``, else ``~/.cache/numsweep``), maps a key (this machine: CPU model,
cores, BLAS libraries and their kernels, NumPy version, device; the group's shapes; the BLAS
threads per trial) to the seconds per trial-update of each measured group size. A corrupt or
unreadable file is measured over and rewritten; a folder that cannot be written leaves the
measurement unkept. Deleting the file makes every group size be measured again.
"""

from __future__ import annotations

import json
import math
import os
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from numsweep.engine import TrialSpec
from numsweep.engine.group import group_key

CACHE_FILE = "group_pace.json"
CACHE_VERSION = 1

UNTIMED = frozenset({"data_seed", "n_train", "n_val", "n_s", "cycles", "cycle_mult",
                     "n_updates", "step_size", "curve_points", "eval_train"})
"""Group-key parameters that change how long or how often a run measures, not what one
update costs: left out of the cache key."""

Measure = Callable[[TrialSpec, tuple[int, ...], int, Sequence[int], int], Mapping[int, float]]
"""(spec, image shape, classes, group sizes, BLAS threads) -> seconds per trial-update by K."""


def cache_folder() -> Path:
    """numsweep's cache folder, the data's too (``engine.data.cache_dir``)."""
    from numsweep.engine.data import cache_dir

    return cache_dir()


def cpu_model() -> str:
    """The CPU's model name (``platform.processor()`` is empty on many Linux machines)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(spec: TrialSpec) -> dict[str, Any]:
    """What makes this machine's measurement its own: CPU, cores, BLAS (library, version,
    kernel), NumPy, the device."""
    import numpy as np
    from threadpoolctl import threadpool_info

    from numsweep.engine.pace import pace_device

    blas = sorted(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                  for i in threadpool_info() if i.get("user_api") == "blas")
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "blas": blas,
            "numpy": np.__version__, "device": pace_device(spec)}


def cache_key(spec: TrialSpec, image_shape: Sequence[int], num_classes: int,
              threads: int, machine: Mapping[str, Any]) -> str:
    """The measurement's key in the cache file (a JSON text)."""
    group = {name: value for name, value in group_key(spec) if name not in UNTIMED}
    return json.dumps({"machine": dict(machine), "group": group,
                       "image_shape": [int(d) for d in image_shape],
                       "classes": int(num_classes), "threads": int(threads)},
                      sort_keys=True, default=str)


Entry = tuple[frozenset[int], dict[int, float]]
"""A kept measurement: the sizes it was asked for, the seconds of those it measured (the
larger ones may be left out: past the measurement's time budget)."""


def _read(path: Path) -> dict[str, Entry]:
    """The file's measurements; nothing when it is missing, unreadable or not numsweep's."""
    try:
        raw = json.loads(path.read_text())
        if raw.get("version") != CACHE_VERSION:
            return {}
        return {str(key): (frozenset(int(k) for k in entry["asked"]),
                           {int(k): float(v) for k, v in entry["seconds"].items()
                            if math.isfinite(float(v)) and float(v) > 0})
                for key, entry in raw["entries"].items()}
    except Exception:  # corrupt, truncated, another format: measured again, rewritten
        return {}


def _write(path: Path, entries: Mapping[str, Entry]) -> None:
    """The file rewritten whole and atomically; a folder that cannot be written is let be."""
    data = {"version": CACHE_VERSION,
            "entries": {key: {"asked": sorted(asked),
                              "seconds": {str(k): v for k, v in sorted(seconds.items())}}
                        for key, (asked, seconds) in entries.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".group_pace.", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass


def engine_measure(spec: TrialSpec, image_shape: tuple[int, ...], num_classes: int,
                   sizes: Sequence[int], threads: int) -> Mapping[int, float]:
    """The engine's measurement (:func:`engine.pace.group_pace`)."""
    from numsweep.engine.pace import group_pace

    return group_pace(spec, image_shape, num_classes, sizes, threads=threads)


def cached_pace(spec: TrialSpec, image_shape: Sequence[int], num_classes: int,
                sizes: Sequence[int], threads: int, *, measure: Measure | None = None,
                machine: Mapping[str, Any] | None = None,
                folder: Path | None = None) -> dict[int, float]:
    """Seconds per trial-update of each of ``sizes`` that was measured: from the cache when
    it holds a measurement of this machine and group asked for every one of ``sizes``, else
    measured by ``measure`` (default :func:`engine_measure`) and kept (beside what was kept
    of other sizes)."""
    path = (folder or cache_folder()) / CACHE_FILE
    key = cache_key(spec, image_shape, num_classes, threads,
                    machine_key(spec) if machine is None else machine)
    wanted = frozenset(int(k) for k in sizes)
    hit = _read(path).get(key)
    if hit is not None and wanted <= hit[0] and 1 in hit[1]:
        return {k: v for k, v in hit[1].items() if k in wanted}
    measure = engine_measure if measure is None else measure
    measured = {int(k): float(v) for k, v in measure(spec, tuple(image_shape), num_classes,
                                                     sorted(wanted), threads).items()}
    if 1 in measured:
        entries = _read(path)  # as it is now: another process may have written meanwhile
        asked, seconds = entries.get(key, (frozenset(), {}))
        entries[key] = (asked | wanted, {**seconds, **measured})
        _write(path, entries)
    return measured
