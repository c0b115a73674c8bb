"""The agent's liveness rule: ping after `interval` of silence, dead after `misses` misses."""

from __future__ import annotations

import pytest

from pushwire.client.heartbeat import Heartbeat


def test_answered_pings_keep_the_link_alive() -> None:
    hb = Heartbeat(interval=10, misses=3)
    last_heard = 0.0
    actions = []
    for now in range(1, 200):
        action = hb.tick(float(now), last_heard)
        actions.append(action)
        if action == "ping":
            last_heard = now + 0.5  # the PINGRESP arrives
    assert "dead" not in actions and actions.count("ping") >= 15


@pytest.mark.parametrize("misses", [1, 2, 5])
def test_dead_after_misses_unanswered_pings(misses: int) -> None:
    hb = Heartbeat(interval=4, misses=misses)
    pings, dead_at = 0, None
    for now in range(1, 100):
        action = hb.tick(float(now), 0.0)
        if action == "ping":
            pings += 1
        elif action == "dead":
            dead_at = now
            break
    assert pings == misses and dead_at == 4 * (misses + 1)


def test_pings_when_only_the_device_is_silent() -> None:
    # pushes keep arriving (last_heard is fresh) but the device has sent nothing: the
    # server would drop it after 1.5 x keepalive, so the agent pings
    hb = Heartbeat(interval=10, misses=2)
    assert hb.tick(9.0, last_heard=9.0, last_sent=0.0) is None
    assert hb.tick(10.0, last_heard=10.0, last_sent=0.0) == "ping"
    assert hb.tick(12.0, last_heard=12.0, last_sent=10.0) is None


def test_reset_and_bad_settings() -> None:
    hb = Heartbeat(interval=1, misses=1)
    assert hb.tick(1.0, 0.0) == "ping"
    hb.reset()
    assert hb.tick(1.5, 1.0) is None
    with pytest.raises(ValueError):
        Heartbeat(interval=0)
    with pytest.raises(ValueError):
        Heartbeat(interval=1, misses=0)
