"""Settings precedence: explicit flags > PUSHWIRE_* environment > TOML file > defaults."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from pushwire.cli import build_parser
from pushwire.config import Settings, load_settings


def test_defaults() -> None:
    s = load_settings()
    assert (s.bind, s.mqtt_port, s.http_port) == ("127.0.0.1", 1883, 8080)
    assert s.data_dir == Path("pushwire-data") and not s.memory and s.durability


def test_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text('mqtt_port = 1000\nhttp_port = 2000\nbind = "0.0.0.0"\n')
    monkeypatch.setenv("PUSHWIRE_HTTP_PORT", "3000")
    monkeypatch.setenv("PUSHWIRE_MQTT_PORT", "3001")
    s = load_settings(toml, mqtt_port=4000)
    assert s.mqtt_port == 4000  # flag beats env and file
    assert s.http_port == 3000  # env beats file
    assert s.bind == "0.0.0.0"  # file beats default


def test_unknown_toml_key_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "p.toml"
    toml.write_text("mqtt_prot = 1\n")
    with pytest.raises(ValidationError):
        load_settings(toml)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "nope.toml")


def test_every_setting_has_a_flag() -> None:
    parser = build_parser()
    ns = parser.parse_args(["serve", "--mqtt-port", "0", "--memory", "--no-durability"])
    assert ns.mqtt_port == 0 and ns.memory is True and ns.durability is False
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    help_text = commands.choices["serve"].format_help()
    for name in Settings.model_fields:
        assert "--" + name.replace("_", "-") in help_text
