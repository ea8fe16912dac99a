"""Memory of N sweep workers against one: the dataset is shared, not copied per worker.

Runs a grid sweep with --jobs 1 and with --jobs N and samples, every 0.1 s, the memory of
this process's worker processes from /proc/PID/smaps_rollup (Linux): Rss, Pss (shared pages
split between the processes mapping them) and private (USS). Reports the peaks against the
size of the normalised split that every trial reads; a per-worker copy would add about that
size to each worker's private memory.

    python benchmarks/sweep_memory.py --data ../shared/data/cifar10.npz --jobs 2 --trials 4
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

from sweep_common import add_size_arguments, fresh_storage, lambda_spec, machine

from numsweep.engine import load_dataset, make_split
from numsweep.sweeps import run_sweep


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def memory(pid: int) -> dict[str, int]:
    """Rss, Pss and private (USS) in bytes."""
    fields: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0].endswith(":") and parts[1].isdigit():
                fields[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        return {}
    return {"rss": fields.get("Rss", 0), "pss": fields.get("Pss", 0),
            "uss": fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)}


def sample(stop: threading.Event, peaks: dict[str, float]) -> None:
    me = os.getpid()
    while not stop.is_set():
        workers = [memory(p) for p in children(me)]
        workers = [w for w in workers if w]
        main = memory(me)
        for key in ("rss", "pss", "uss"):
            total = sum(w[key] for w in workers)
            peaks[f"workers_{key}"] = max(peaks.get(f"workers_{key}", 0), total)
            if workers:
                peaks[f"max_worker_{key}"] = max(peaks.get(f"max_worker_{key}", 0),
                                                 max(w[key] for w in workers))
            peaks[f"main_{key}"] = max(peaks.get(f"main_{key}", 0), main.get(key, 0))
        stop.wait(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_size_arguments(parser)
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    data = load_dataset(args.data)
    split = make_split(data, args.n_train, args.n_val)
    size = sum(getattr(split, f).nbytes for f in ("x_train", "x_val", "x_test"))
    del split
    print(f"normalised split: {size / 2**20:.1f} MiB")
    mib = 2**20
    for jobs in (1, args.jobs):
        peaks: dict[str, float] = {}
        stop = threading.Event()
        thread = threading.Thread(target=sample, args=(stop, peaks), daemon=True)
        thread.start()
        run_sweep(lambda_spec(args, f"mem{jobs}", args.trials),
                  fresh_storage(args.workdir, f"memory-j{jobs}"), data_source=args.data,
                  jobs=jobs)
        time.sleep(0.2)
        stop.set()
        thread.join()
        where = "in-process" if jobs == 1 else f"{jobs} workers"
        line = (f"--jobs {jobs} ({where}): main process peak RSS "
                f"{peaks.get('main_rss', 0) / mib:.0f} MiB, private "
                f"{peaks.get('main_uss', 0) / mib:.0f} MiB")
        if jobs > 1:
            line += (f"; workers together: peak RSS {peaks.get('workers_rss', 0) / mib:.0f} "
                     f"MiB, PSS {peaks.get('workers_pss', 0) / mib:.0f} MiB, private "
                     f"{peaks.get('workers_uss', 0) / mib:.0f} MiB; largest single worker "
                     f"private {peaks.get('max_worker_uss', 0) / mib:.0f} MiB "
                     f"(a copy of the split would be {size / mib:.0f} MiB each)")
        print(line)


if __name__ == "__main__":
    main()
