"""The codec package's split into modules costs its hot paths nothing: no function calls a
method on a `from`-imported object (CPython then skips LOAD_METHOD and makes a bound method
per call; see mqtt/codec/wire.py `_U16`)."""

from __future__ import annotations

import importlib
import pkgutil
import types

import pushwire.mqtt.codec
from helpers.bytecode import method_calls_on_imported_names


def _codec_modules() -> list[types.ModuleType]:
    return [
        importlib.import_module(f"pushwire.mqtt.codec.{info.name}")
        for info in pkgutil.iter_modules(pushwire.mqtt.codec.__path__)
    ]


def test_codec_package_has_its_modules() -> None:
    names = {module.__name__.rsplit(".", 1)[1] for module in _codec_modules()}
    assert {"decoder", "encoder", "publish", "connect", "publish_caches"} <= names


def test_no_method_call_on_a_from_imported_name() -> None:
    found = [hit for module in _codec_modules() for hit in method_calls_on_imported_names(module)]
    assert found == []
