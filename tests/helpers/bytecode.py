"""Bytecode checks for modules split by job (tests/unit/test_codec_bytecode.py,
tests/unit/test_http_protocol_bytecode.py): CPython 3.11 compiles `obj.method()` on a name
brought in with `from x import obj` without LOAD_METHOD in the cases these find, and then
builds a bound method per call, a cost a split must not add to a hot path."""

from __future__ import annotations

import dis
import itertools
import types
from collections.abc import Iterator


def code_objects(module: types.ModuleType) -> Iterator[types.CodeType]:
    """Every function, method (properties, static and class methods too) and closure body
    defined in module."""
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


def method_calls_on_imported_names(module: types.ModuleType) -> list[str]:
    """`name.method` loads compiled without LOAD_METHOD (a global pushed with NULL, then a
    plain attribute load), on a name that is not a module (`struct.error`, `asyncio.Task`
    are fine)."""
    found = []
    for code in code_objects(module):
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
