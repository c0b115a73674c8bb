"""`pushwire bench http --batch-clients`: the load-generator processes run as SCHED_BATCH
(they never preempt the server on wake-up; bench/README.md, f-sse)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from pushwire.bench import http as bench_http


def test_the_flag_reaches_the_client_processes_through_their_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # set, then removed: monkeypatch restores the variable's first state (absent) afterwards
    monkeypatch.setenv(bench_http.BATCH_CLIENTS_ENV, "")
    monkeypatch.delenv(bench_http.BATCH_CLIENTS_ENV)
    bench_http.parse_args(["--only", "sse"])
    assert bench_http.BATCH_CLIENTS_ENV not in os.environ
    bench_http.parse_args(["--only", "sse", "--batch-clients"])
    assert os.environ[bench_http.BATCH_CLIENTS_ENV] == "1"


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="Linux scheduling policies")
def test_a_client_process_runs_as_a_batch_task() -> None:
    # in a child process: the policy would stay on the test process
    code = (
        "import os; from pushwire.bench.http import batch_scheduling; "
        "before = os.sched_getscheduler(0); batch_scheduling(); "
        "print(before == os.SCHED_OTHER, os.sched_getscheduler(0) == os.SCHED_BATCH)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
