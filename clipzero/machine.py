"""This machine as clipzero's own work sees it: the cores a process may use, and a lower priority for work that
should give way to a server's small requests."""

from __future__ import annotations

import os
import threading

__all__ = ["lower_priority", "usable_cores"]

#: The niceness of work that gives way (Linux: 0 is normal, 19 the lowest).
NICENESS = 10


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, as a container or `taskset` sets it, where the platform
    says), at least 1: every default number of workers, threads and slots starts from it."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on this platform
        return os.cpu_count() or 1


def lower_priority() -> None:
    """Run the calling thread at :data:`NICENESS` (Linux sets it per thread; a forked worker's only thread is the
    process), so that small requests' threads go first. Where that is not possible, nothing changes."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except (AttributeError, OSError):  # not Linux, or not permitted
        pass
