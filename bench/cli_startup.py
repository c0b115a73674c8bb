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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# `user list` on an empty data directory runs the command (not only its parser): the
# read-only path lists nothing without creating a database
COMMANDS: list[list[str]] = [
    ["--help"],
    ["--version"],
    ["pub", "--help"],
    ["sub", "--help"],
    ["user", "list", "--help"],
    ["user", "list"],
    ["app", "list", "--help"],
    ["serve", "--help"],
]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_once(args: list[str], env: dict[str, str]) -> tuple[float, float]:
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
    if done.returncode != 0:
        raise SystemExit(f"pushwire {' '.join(args)} exited {done.returncode}")
    return elapsed, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--before", type=Path, default=None, help="another tree's src/")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        base = {**os.environ, "PUSHWIRE_DATA_DIR": data_dir}
        base.pop("PUSHWIRE_ENGINE", None)
        trees = {"after": base}
        if opts.before is not None:
            trees = {"before": {**base, "PYTHONPATH": str(opts.before)}, "after": base}
        print(f"load average at start: {os.getloadavg()}")
        times: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(opts.runs):
            for args in COMMANDS:
                for tree, env in trees.items():
                    times.setdefault((" ".join(args), tree), []).append(_run_once(args, env))
        print(f"load average at end:   {os.getloadavg()}")
    for column, label in ((0, "wall"), (1, "cpu")):
        header = f"{label} (median ms)".ljust(24) + "".join(f"{t:>10}" for t in trees)
        print("\n" + header + ("     ratio" if len(trees) == 2 else ""))
        for args in COMMANDS:
            name = " ".join(args)
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
