"""The HTTP benchmark's CPU figures: a server's CPU time read from outside at nanosecond
resolution (not /proc ticks), and the rate publisher's phase against the window's edges."""

from __future__ import annotations

import math
import subprocess
import sys

from pushwire.bench.cpuclock import cpu_seconds_precise
from pushwire.bench.http import first_send_at
from pushwire.bench.peers import cpu_seconds

# the child spins until its own CPU clock passes 23.4 ms (between two 10 ms ticks), prints
# that reading, then blocks on stdin: what we read from outside must agree with it
SPIN = (
    "import sys, time\n"
    "while time.process_time() < 0.0234: pass\n"
    "print(time.process_time(), flush=True)\n"
    "sys.stdin.readline()\n"
)


def test_precise_cpu_of_another_process_has_sub_tick_resolution() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        own = float(child.stdout.readline())
        outside = cpu_seconds_precise(child.pid)
        ticks = cpu_seconds(child.pid)
    finally:
        child.communicate("\n")
    # the reading outside includes everything the child did up to print (and a little of it)
    assert own <= outside < own + 0.005
    # the tick count is a multiple of 10 ms and misses the fraction
    assert math.isclose(ticks * 100, round(ticks * 100))
    assert outside != ticks


def test_first_send_is_half_an_interval_off_the_window_edges() -> None:
    interval = 0.5
    for now in (0.0, 0.01, 0.249, 0.25, 0.3, 0.74, 1.99):
        due = first_send_at(2.2, now, interval)
        assert now <= due < now + interval
        # on the grid window start + interval/2 + k * interval
        phase = (due - 2.2 - interval / 2) / interval
        assert math.isclose(phase, round(phase), abs_tol=1e-9)
    # the window's first send is interval/2 after its start, the last interval/2 before its end
    assert math.isclose(first_send_at(2.2, 2.2, interval), 2.45)
