"""A server's CPU time in nanoseconds, read from outside the process.

`/proc/PID/stat`'s utime and stime count clock ticks (10 ms at USER_HZ=100): a delivery
scenario at N=1,000 costs a server 50-70 ms of CPU in a 5 s window, so the tick count is
5-7 and one tick either way moves a ratio by 15-20 %. Linux gives every process a CPU-time
clock (clock_getcpuclockid(3)); its id is computed from the PID (the kernel's
MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED), which glibc's clock_getcpuclockid returns too,
and which Python does not wrap) and `clock_gettime` on it returns the scheduler's runtime of
every thread of the process, including threads that have ended, in nanoseconds. The same
clock is read for pushwire and for nginx's master and worker, so both are measured alike.
"""

from __future__ import annotations

import time

from pushwire.bench.peers import cpu_seconds as tick_cpu_seconds

_CPUCLOCK_SCHED = 2  # the kernel's CPUCLOCK_SCHED: runtime, user + system


def process_clock_id(pid: int) -> int:
    """The clock id of `pid`'s process-wide CPU-time clock (glibc's clock_getcpuclockid)."""
    return ((~pid) << 3) | _CPUCLOCK_SCHED


def cpu_seconds_precise(*pids: int) -> float:
    """User + system CPU time of processes (all their threads), nanosecond resolution; the
    tick count of /proc/PID/stat where the kernel refuses the clock."""
    total = 0.0
    for pid in pids:
        try:
            total += time.clock_gettime(process_clock_id(pid))
        except OSError:
            total += tick_cpu_seconds(pid)
    return total
