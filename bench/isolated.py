"""Run one measurement in a fresh process and report its peak memory.

torch allocates outside Python's allocator (tracemalloc sees none of it), so memory is read from
the kernel: each measurement runs in a spawned child, which reports its own ru_maxrss (the peak
resident set of the training process, exact); meanwhile the parent samples the proportional set
size (PSS, shared pages split between sharers) of the child's whole process tree, env worker
processes included, every SAMPLE_INTERVAL seconds, and keeps the largest sum (a sampled peak: a
spike shorter than the interval can be missed; the child adds one last sample of its own).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import resource
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, Callable

from agents.config import ConfigError

# Seconds between samples of the process tree's memory. Reading smaps_rollup walks every page
# table of the tree: 23 ms of CPU per sample for a 2-rank Breakout run (919 MiB PSS), and the
# walk holds each process's mmap lock meanwhile. At 0.25 s that slowed the runs it measured: a
# 2-rank run's 592 and 619 env steps/s unsampled against 552 and 520 sampled (2026-12-06). At 2 s
# the sampler takes about 1 % of one core; memory plateaus within a few updates, and the child's
# own last sample covers runs shorter than the interval.
SAMPLE_INTERVAL = 2.0


class BenchError(RuntimeError):
    """A measurement that failed; reported as one `error:` line."""


def _children_of() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the name in (…) may hold spaces
        children.setdefault(ppid, []).append(int(entry))
    return children


def tree_pss_kib(pid: int) -> int:
    """Sum of PSS (KiB) over `pid` and all its descendants, from /proc/<pid>/smaps_rollup."""
    children = _children_of()
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        stack += children.get(current, [])
        try:
            for line in Path(f"/proc/{current}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def _child(target: Callable[..., dict], kwargs: dict, result_path: str) -> None:
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pixel envs render with SDL, no screen here
    try:
        result = target(**kwargs)
        # After the target has closed its envs: their worker processes are reaped by now.
        result["maxrss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["worker_maxrss_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        # A last sample from inside: runs shorter than SAMPLE_INTERVAL may finish between samples.
        result["final_pss_mib"] = tree_pss_kib(os.getpid()) / 1024
    except ConfigError as exc:
        result = {"error": str(exc)}
    except Exception as exc:  # reported by the parent as one line; the traceback goes to stderr
        traceback.print_exc(file=sys.stderr)
        result = {"error": f"{type(exc).__name__}: {exc}"}
    Path(result_path).write_text(json.dumps(result))


def run_isolated(target: Callable[..., dict], **kwargs: Any) -> dict:
    """Call `target(**kwargs)` (a module-level function returning a JSON-able dict) in a spawned
    process; return its dict plus maxrss_mib (peak RSS of that process), worker_maxrss_mib (the
    largest reaped child, e.g. an env worker) and tree_pss_mib (peak sampled PSS of the tree)."""
    context = multiprocessing.get_context("spawn")  # a clean interpreter: nothing inherited
    with tempfile.TemporaryDirectory(prefix="bench-") as folder:
        result_path = os.path.join(folder, "result.json")
        process = context.Process(target=_child, args=(target, kwargs, result_path))
        process.start()
        peak = 0
        try:
            while process.is_alive():
                peak = max(peak, tree_pss_kib(process.pid))
                process.join(SAMPLE_INTERVAL)
        finally:
            if process.is_alive():  # interrupted: take the child (and its env workers) down
                process.terminate()
                process.join()
        if not os.path.exists(result_path):
            raise BenchError(f"{target.__name__} died with exit code {process.exitcode}")
        result = json.loads(Path(result_path).read_text())
    if "error" in result:
        raise BenchError(f"{target.__name__}: {result['error']}")
    result["tree_pss_mib"] = max(peak / 1024, result["final_pss_mib"])
    return result
