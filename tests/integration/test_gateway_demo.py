"""examples/gateway_demo.py runs end to end with one command and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "examples" / "gateway_demo.py"


@pytest.mark.timeout(90)
def test_gateway_demo_runs_end_to_end() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUSHWIRE_")}
    done = subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True,
        text=True,
        timeout=80,
        env=env,
        check=False,
    )
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    for step in (
        "apps created with the CLI",
        "one MQTT connection for two apps",
        "device <- chat: 'hello from chat'",
        "device <- news: 'breaking news'",
        "wake webhook received (signature ok)",
        "missed pushes arrived, in order; none handed twice",
    ):
        assert step in out, out
    # the missed pushes are printed in the order they were sent
    order = [
        out.index(f"device <- {text}")
        for text in (
            "chat: 'missed chat 0'",
            "news: 'missed news 0'",
            "chat: 'missed chat 1'",
            "chat: 'missed chat 2'",
            "chat: 'last one'",
        )
    ]
    assert order == sorted(order)
