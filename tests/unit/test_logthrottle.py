from __future__ import annotations

import logging

import pytest

from pushwire.core.logthrottle import ThrottledLog


def test_one_line_per_interval_then_a_count(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("throttle-test")
    throttled = ThrottledLog(logger, interval=3600)
    with caplog.at_level(logging.INFO, logger="throttle-test"):
        for _ in range(100):
            throttled.log(logging.INFO, "1.2.3.4", "refused %s", "1.2.3.4")
        throttled.log(logging.INFO, "5.6.7.8", "refused %s", "5.6.7.8")
    assert [r.getMessage() for r in caplog.records] == ["refused 1.2.3.4", "refused 5.6.7.8"]
    quick = ThrottledLog(logger, interval=0.0)
    with caplog.at_level(logging.INFO, logger="throttle-test"):
        caplog.clear()
        quick.log(logging.INFO, "k", "x")
        quick.log(logging.INFO, "k", "x")
    assert len(caplog.records) == 2
