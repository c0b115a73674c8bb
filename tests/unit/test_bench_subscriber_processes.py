"""`pushwire bench http --subscriber-processes`: how many client processes the subscribers
are spread over (issue 10's protocol: 2 at every N; bench/README.md, g-sse)."""

from __future__ import annotations

import pytest

from pushwire.bench import http as bench_http


def test_the_subscribers_run_in_two_processes_at_every_size_unless_told_otherwise() -> None:
    s = bench_http.Settings()
    assert [bench_http.subscriber_processes(n, s) for n in (1, 2, 1000, 10_000)] == [1, 2, 2, 2]
    four = bench_http.Settings(subscriber_processes=4)
    assert [bench_http.subscriber_processes(n, four) for n in (3, 10_000)] == [3, 4]


def test_the_flag_sets_the_count_and_refuses_nonsense(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_http.parse_args([]).subscriber_processes == 2
    assert bench_http.parse_args(["--subscriber-processes", "4"]).subscriber_processes == 4
    for bad in ("0", str(bench_http.MAX_SUBSCRIBER_PROCESSES + 1)):
        with pytest.raises(SystemExit) as exited:
            bench_http.parse_args(["--subscriber-processes", bad])
        assert exited.value.code == 2
        assert "--subscriber-processes must be" in capsys.readouterr().err
