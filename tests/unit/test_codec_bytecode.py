"""The codec package's split into modules costs its hot paths nothing: no function calls a
method on a `from`-imported object (CPython then skips LOAD_METHOD and makes a bound method
per call; see mqtt/codec/wire.py `_U16`)."""

from __future__ import annotations

import dis
import importlib
import itertools
import pkgutil
import types
from collections.abc import Iterator

import pushwire.mqtt.codec


def _codec_modules() -> list[types.ModuleType]:
    return [
        importlib.import_module(f"pushwire.mqtt.codec.{info.name}")
        for info in pkgutil.iter_modules(pushwire.mqtt.codec.__path__)
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
                if isinstance(function, types.FunctionType):
                    pending.append(function.__code__)
    while pending:
        code = pending.pop()
        yield code
        pending.extend(const for const in code.co_consts if isinstance(const, types.CodeType))


def _method_calls_on_imported_names(module: types.ModuleType) -> list[str]:
    """`name.method` loads compiled without LOAD_METHOD (a global pushed with NULL, then a
    plain attribute load), on a name that is not a module (`struct.error` is fine)."""
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


def test_codec_package_has_its_modules() -> None:
    names = {module.__name__.rsplit(".", 1)[1] for module in _codec_modules()}
    assert {"decoder", "encoder", "publish", "connect", "publish_caches"} <= names


def test_no_method_call_on_a_from_imported_name() -> None:
    found = [hit for module in _codec_modules() for hit in _method_calls_on_imported_names(module)]
    assert found == []
