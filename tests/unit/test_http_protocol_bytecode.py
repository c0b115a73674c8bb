"""The HTTP listener's split into modules (http/protocol.py -> connection, server, routes,
cycles, asgi_cycle, upgrade, eager, status_lines, connection_deadlines) costs its hot paths
nothing: no function calls a method on a `from`-imported object (CPython 3.11 then skips
LOAD_METHOD and makes a bound method per call; see tests/unit/test_codec_bytecode.py), and
the modules import one another without a cycle at run time."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

from helpers.bytecode import method_calls_on_imported_names

LISTENER_MODULES = [
    "pushwire.http.connection",
    "pushwire.http.server",
    "pushwire.http.routes",
    "pushwire.http.cycles",
    "pushwire.http.asgi_cycle",
    "pushwire.http.upgrade",
    "pushwire.http.eager",
    "pushwire.http.status_lines",
    "pushwire.http.connection_deadlines",
]


def test_no_method_call_on_a_from_imported_name() -> None:
    modules = [importlib.import_module(name) for name in LISTENER_MODULES]
    found = [hit for module in modules for hit in method_calls_on_imported_names(module)]
    assert found == []


def test_the_old_module_is_gone() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pushwire.http.protocol")


@pytest.mark.parametrize("name", LISTENER_MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """A module imported first finds everything it needs at run time (a cycle between the
    parts would fail here for the module that starts it)."""
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, timeout=60)
