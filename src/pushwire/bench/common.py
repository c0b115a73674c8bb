"""What the MQTT and HTTP benchmarks share: CPU accounting, the closing notes, JSON output
and the entry point that stops every process on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

# other processes using more than this share of a core make a row unreliable
BUSY_MACHINE = 0.5


class _HasCpu(Protocol):
    @property
    def cpu_util(self) -> float: ...


class MeasuredRun(Protocol):
    """One scenario against one server, as both benchmarks record it."""

    @property
    def machine_cpu(self) -> float | None: ...
    @property
    def server_cpu(self) -> float | None: ...
    @property
    def clients(self) -> Sequence[_HasCpu]: ...


def own_cpu_seconds() -> float:
    """User + system CPU time of this process (all its threads), from its CPU-time clock:
    nanoseconds (os.times() counts 10 ms ticks, which read a load-generator process that
    used a few ms in a window as 0%)."""
    return time.process_time()


def other_cpu(outcome: MeasuredRun) -> float | None:
    """Busy cores not charged to the server or the load generator: other processes on the
    machine, and kernel work (softirq, loopback TCP) no process is charged for."""
    if outcome.machine_cpu is None or outcome.server_cpu is None:
        return None
    return outcome.machine_cpu - outcome.server_cpu - sum(r.cpu_util for r in outcome.clients)


def print_busy_note(results: Mapping[str, Mapping[str, MeasuredRun]], cores: str) -> None:
    """Name the rows during which the rest of the machine was busy."""
    busy = [
        f"{scenario}/{name} {rest:.0%}"
        for scenario, outcomes in results.items()
        for name, outcome in outcomes.items()
        if name != "stub" and (rest := other_cpu(outcome)) is not None and rest > BUSY_MACHINE
    ]
    if busy:
        print(f"\nnote: the rest of the machine was busy during {', '.join(busy)} (% of a core);")
        print(f"other processes compete for {cores}: rerun on a quiet machine to compare")


def write_json(path: Path | None, data: Any) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))
    print(f"\nresults written to {path}")


def _interrupt_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally that stops a process


def run_cli(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a benchmark; SIGTERM and Ctrl-C stop its servers and load generators."""
    previous = signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        return run(args)
    except KeyboardInterrupt:
        print("interrupted; servers and load generators stopped", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
