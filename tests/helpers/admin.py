"""`pushwire user|token|acl` for fixtures: the CLI's own parser and handlers
(pushwire/admin_cli.py, what the command runs), called in the test process.

A Python start per command costs ~0.5 s of CPU; fixtures that make six or seven of them
took most of the 60 s integration timeout on a loaded machine. Tests of the command itself
(tests/integration/test_admin_cli.py) still run it as a process."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

from pushwire import admin_cli


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """`pushwire <args> --data-dir <data_dir>`; its stdout. Fails with its stderr unless it
    exits 0."""
    ns = admin_cli.build_parser().parse_args([*args, "--data-dir", str(data_dir)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = admin_cli.run_admin_command(ns, stdin=io.StringIO(stdin or ""), stdout=out)
    assert code == 0, err.getvalue()
    return out.getvalue()
