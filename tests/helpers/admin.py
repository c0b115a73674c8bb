"""`pushwire user|token|acl` for fixtures: the CLI's own parser and handlers
(pushwire/admin_cli.py, what the command runs), called in the test process.

A Python start per command costs ~0.5 s of CPU; fixtures that make six or seven of them
took most of the 60 s integration timeout on a loaded machine. Tests of the command itself
(tests/integration/test_admin_cli.py) run each kind of outcome as a process too."""

from __future__ import annotations

import contextlib
import io
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pushwire.admin_cli as admin_cli


def cli(data_dir: Path, *args: str, stdin: str | None = None) -> str:
    """`pushwire <args> --data-dir <data_dir>`; its stdout. Fails with its stderr unless it
    exits 0."""
    ns = admin_cli.build_parser().parse_args([*args, "--data-dir", str(data_dir)])
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = admin_cli.run_admin_command(ns, stdin=io.StringIO(stdin or ""), stdout=out)
    assert code == 0, err.getvalue()
    return out.getvalue()


def run(argv: Sequence[str], *, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """`python -m pushwire.admin_cli <argv>` in the test process: its exit code (argparse's
    usage exit 2 included), stdout and stderr, as subprocess.run(text=True) gives them."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            ns = admin_cli.build_parser().parse_args(list(argv))
            code = admin_cli.run_admin_command(ns, stdin=io.StringIO(stdin), stdout=out)
        except SystemExit as exc:  # argparse refuses bad usage with sys.exit(2)
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(list(argv), code, out.getvalue(), err.getvalue())
