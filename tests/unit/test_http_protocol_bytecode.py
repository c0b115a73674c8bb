"""The HTTP listener's split into modules (http/protocol.py -> connection, server, routes,
cycles, asgi_cycle, upgrade, eager, status_lines, connection_deadlines) costs its hot paths
nothing: no function calls a method on a `from`-imported object (CPython 3.11 then skips
LOAD_METHOD and makes a bound method per call; see tests/unit/test_codec_bytecode.py), and
the modules import one another without a cycle at run time."""

from __future__ import annotations

import dis
import importlib
import itertools
import subprocess
import sys
import types
from collections.abc import Iterator

import pytest

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


def _code_objects(module: types.ModuleType) -> Iterator[types.CodeType]:
    """Every function, method and closure body defined in module."""
    pending: list[types.CodeType] = []
    for value in vars(module).values():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        if isinstance(value, types.FunctionType):
            pending.append(value.__code__)
        elif isinstance(value, type):
            for member in vars(value).values():
                function = getattr(member, "fget", member)
                function = getattr(function, "__func__", function)
                if isinstance(function, types.FunctionType):
                    pending.append(function.__code__)
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))


def _method_calls_on_imported_names(module: types.ModuleType) -> list[str]:
    """`name.method` loads compiled without LOAD_METHOD (a global pushed with NULL, then a
    plain attribute load), on a name that is not a module (`asyncio.Task` is fine)."""
    found = []
    for code in _code_objects(module):
        for load, attr in itertools.pairwise(dis.get_instructions(code)):
            if (
                load.opname == "LOAD_GLOBAL"
                and load.argrepr.startswith("NULL + ")
                and attr.opname == "LOAD_ATTR"
                and not attr.argrepr.startswith("NULL|self")
                and not isinstance(vars(module).get(load.argval), types.ModuleType)
            ):
                found.append(f"{module.__name__}:{code.co_qualname}: {load.argval}.{attr.argval}")
    return found


def test_no_method_call_on_a_from_imported_name() -> None:
    modules = [importlib.import_module(name) for name in LISTENER_MODULES]
    found = [hit for module in modules for hit in _method_calls_on_imported_names(module)]
    assert found == []


def test_the_old_module_is_gone() -> None:
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("pushwire.http.protocol")


@pytest.mark.parametrize("name", LISTENER_MODULES)
def test_each_module_imports_first_in_a_fresh_interpreter(name: str) -> None:
    """A module imported first finds everything it needs at run time (a cycle between the
    parts would fail here for the module that starts it)."""
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, timeout=60)
