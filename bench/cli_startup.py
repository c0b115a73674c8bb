"""Wall and CPU time of one `pushwire` command-line start, per command: medians of N runs.

    .venv/bin/python bench/cli_startup.py [--runs N] [--before OTHER/src]

Each run is a fresh `python -m pushwire <args>` process (what a user or a test pays per
command). With `--before`, every command is also run with PYTHONPATH pointing at another
tree's src/ (e.g. `git archive main src | tar -x -C /tmp/before`), interleaved run by run
with this tree's, so both see the same machine load; the load average is printed. CPU time
(the child's user + system time) is the steadier figure on a loaded machine: wall time there
is mostly waiting for a core. Bounded: N x commands x trees short processes.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `user list` on an empty data directory runs the command (not only its parser): the
# read-only path lists nothing without creating a database. The `pub` runs connect to a
# bound, not listening, port ({closed}): refused at once, exit 1, after the transport's
# imports and the connect attempt, which is what a start costs before the first byte.
COMMANDS: list[tuple[list[str], int]] = [
    (["--help"], 0),
    (["--version"], 0),
    (["pub", "--help"], 0),
    (["sub", "--help"], 0),
    (["pub", "-L", "mqtt://127.0.0.1:{closed}", "-t", "t", "-m", "m"], 1),
    (["pub", "-L", "http://127.0.0.1:{closed}", "-t", "t", "-m", "m"], 1),
    (["user", "list", "--help"], 0),
    (["user", "list"], 0),
    (["app", "list", "--help"], 0),
    (["serve", "--help"], 0),
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(args: list[str], code: int, env: dict[str, str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one start."""
    cpu = _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pushwire", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    elapsed = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if done.returncode != code:
        raise SystemExit(f"pushwire {' '.join(args)} exited {done.returncode}, not {code}")
    return elapsed, cpu


def _name(args: list[str]) -> str:
    if args[0] == "pub" and args[1] == "-L":
        return f"pub {args[2].split(':')[0]} (refused)"
    return " ".join(args)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", type=Path, default=None, help="another tree's src/")
    opts = parser.parse_args()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # never listens: a connect to it is refused
    commands = [
        ([a.format(closed=closed.getsockname()[1]) for a in args], code) for args, code in COMMANDS
    ]
    with closed, tempfile.TemporaryDirectory() as data_dir:
        base = {**os.environ, "PUSHWIRE_DATA_DIR": data_dir}
        base.pop("PUSHWIRE_ENGINE", None)
        trees = {"after": base}
        if opts.before is not None:
            trees = {"before": {**base, "PYTHONPATH": str(opts.before)}, "after": base}
        print(f"load average at start: {os.getloadavg()}")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(opts.runs):
            for args, code in commands:
                for tree, env in trees.items():
                    run = _run_once(args, code, env)
                    times.setdefault((_name(args), tree), []).append(run)
        print(f"load average at end:   {os.getloadavg()}")
    for column, label in ((0, "wall"), (1, "cpu")):
        header = f"{label} (median ms)".ljust(24) + "".join(f"{t:>10}" for t in trees)
        print("\n" + header + ("     ratio" if len(trees) == 2 else ""))
        for args, _ in commands:
            name = _name(args)
            medians = [
                statistics.median(run[column] for run in times[(name, t)]) * 1000 for t in trees
            ]
            line = name.ljust(24) + "".join(f"{m:>10.0f}" for m in medians)
            if len(medians) == 2:
                line += f"{medians[1] / medians[0]:>10.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
