"""The README's settings table is the one generated from the Settings model."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pushwire.cli import build_parser
from pushwire.config import Settings
from pushwire.settings_doc import END, START, replace_block, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_settings_table_is_generated_from_the_model() -> None:
    text = README.read_text()
    assert replace_block(text, settings_table()) == text, (
        "README settings table drifted: run `python -m pushwire.settings_doc --write README.md`"
    )


def test_every_setting_has_a_row_and_a_description() -> None:
    block = README.read_text().split(START)[1].split(END)[0]
    for name, field in Settings.model_fields.items():
        assert f"`PUSHWIRE_{name.upper()}`" in block
        assert field.description, f"setting {name} has no description"


def test_help_never_prints_pydantic_undefined() -> None:
    actions = build_parser()._actions
    (commands,) = [a for a in actions if isinstance(a, argparse._SubParsersAction)]
    serve = commands.choices["serve"]
    assert "PydanticUndefined" not in serve.format_help()


def test_config_errors_are_one_clear_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    from pushwire.cli import main

    assert main(["serve", "--memory", "--max-inflight", "0", "--anonymous", "maybe"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [
        "pushwire: bad setting --max-inflight (PUSHWIRE_MAX_INFLIGHT): "
        "Input should be greater than or equal to 1 (got 0)",
        "pushwire: bad setting --anonymous (PUSHWIRE_ANONYMOUS): "
        "Input should be 'auto', 'on' or 'off' (got 'maybe')",
    ]
