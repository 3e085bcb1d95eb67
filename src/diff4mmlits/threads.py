"""How many cores this process computes with: one policy for every command (issue 17: "both cores
everywhere", no oversubscription by default).

The budget is, in order:

1. ``--threads N`` (or ``DIFF4MMLITS_THREADS=N``), when given;
2. ``OMP_NUM_THREADS``, when the environment sets it (``torchrun`` sets 1 per process);
3. the cores this process may use (its CPU affinity: a container's or ``taskset``'s share), less
   the cores other processes keep busy right now (those cores' lines of ``/proc/stat`` over 0.1 s). A busy
   2-core machine gets one thread: OpenMP threads that wait for a descheduled sibling made the
   inpainter 12× slower (823 s with 2 threads under load against 68 s with 1).

Work uses the budget in one of two ways (as nnU-Net and TotalSegmentator do):

- **independent cases or phases** run in that many worker processes (register, phantom), each with
  one thread — the result does not depend on the budget, bit for bit;
- **one big computation** (training, sliding-window inference) uses that many torch intra-op
  threads in this process (:func:`apply_threads`), less the loader worker processes that feed it.
"""

from __future__ import annotations

import logging
import os
import sys
import time

log = logging.getLogger(__name__)

ENV_THREADS = "DIFF4MMLITS_THREADS"
"""Environment variable of the thread budget (``--threads`` sets it for the command's children)."""

_budget: int | None = None


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def available_memory_bytes() -> int | None:
    """Memory the system can give to new work without swapping (``MemAvailable`` of ``/proc/meminfo``),
    bytes; ``None`` where that file is missing (not Linux)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def busy_cores(interval_s: float = 0.1) -> float:
    """Of the cores this process may use, how many other processes kept busy over the next
    ``interval_s`` seconds (this one sleeps meanwhile), from the per-CPU lines of ``/proc/stat``
    (a container's share, not the whole host's load); 0.0 where that is missing (not Linux)."""
    try:
        allowed = {f"cpu{index}" for index in os.sched_getaffinity(0)}
    except AttributeError:
        return 0.0

    def sample() -> dict[str, tuple[int, int]] | None:
        try:
            with open("/proc/stat", encoding="ascii") as stat:
                lines = [line.split() for line in stat if line.startswith("cpu")]
            times = {}
            for line in lines:
                if line[0] in allowed:
                    fields = [int(v) for v in line[1:9]]
                    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
                    times[line[0]] = (sum(fields) - idle, sum(fields))
            return times
        except (OSError, ValueError):
            return None

    first = sample()
    time.sleep(interval_s)
    second = sample()
    if not first or not second:
        return 0.0
    busy = 0.0
    for cpu, (work, total) in second.items():
        if cpu in first and total > first[cpu][1]:
            busy += (work - first[cpu][0]) / (total - first[cpu][1])
    return busy


def choose_threads(requested: int | None = None) -> int:
    """The thread budget of this process (see the module's docstring for the order)."""
    if requested is not None and requested > 0:
        return int(requested)
    for name in (ENV_THREADS, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    cores = usable_cores()
    if cores == 1:
        return 1
    free = cores - busy_cores()
    return max(1, min(cores, int(free + 0.5)))


def apply_threads(requested: int | None = None) -> int:
    """Fix this process's budget (:func:`choose_threads`) and return it: torch's intra-op threads and
    SimpleITK's default (set directly where they are imported, else through ``OMP_NUM_THREADS`` and
    ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS``, which they read when imported: ``--help`` stays fast);
    exported in ``DIFF4MMLITS_THREADS`` so that child processes inherit the choice."""
    global _budget
    threads = choose_threads(requested)
    os.environ[ENV_THREADS] = str(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
    if "SimpleITK" in sys.modules:
        sys.modules["SimpleITK"].ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
    if _budget != threads:
        log.debug("threads: %d (of %d usable cores)", threads, usable_cores())
    _budget = threads
    return threads


def thread_budget() -> int:
    """The budget fixed by :func:`apply_threads`, or chosen now without changing anything."""
    return _budget if _budget is not None else choose_threads()


def worker_processes(limit: int | None = None, jobs: int | None = None) -> int:
    """Worker processes for independent jobs: the thread budget, at most ``limit`` and ``jobs``."""
    count = thread_budget()
    for cap in (limit, jobs):
        if cap is not None:
            count = min(count, cap)
    return max(1, count)
