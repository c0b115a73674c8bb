"""Keep examples/pushwire.toml in step with the Settings model.

    python -m pushwire.example_config --write examples/pushwire.toml

Every setting gets its description (as a comment) and its default; a setting the model
gained is added after the one before it, one it lost is dropped. What is hand-written stays:
the header, the `# ---- section` lines, the example values of commented-out settings (a
certificate path), and the tables at the end (`# ---- Tables` onwards).
tests/unit/test_deploy_files.py fails when the file differs from what this writes.
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from pushwire.config import Settings

SECTION = "# ----"
TABLES = "# ---- Tables"
_VALUE = re.compile(r"^(# ?)?(\w+)( =|:)")


def _value(name: str, field: FieldInfo) -> str:
    default: Any = field.default
    if isinstance(default, bool):
        return f"{name} = {'true' if default else 'false'}"
    if isinstance(default, int | float):
        return f"{name} = {default}"
    if isinstance(default, str | Path):
        return f'{name} = "{default}"'
    if default is None:
        return f"# {name} = "
    return f"# {name}: see the [[{name}]] tables at the end of this file"


def _block(name: str, field: FieldInfo, kept_value: str | None) -> str:
    lines = ["# " + line for line in textwrap.wrap(field.description or name, 94)]
    lines.append(kept_value if kept_value is not None else _value(name, field))
    return "\n".join(lines)


def render(current: str) -> str:
    """The file `current` brought in step with the model."""
    head, _, tail = current.partition(TABLES)
    chunks = head.split("\n\n")
    header: list[str] = []
    items: list[tuple[str, str]] = []  # ("section", text) or ("setting", name)
    kept: dict[str, str] = {}
    for chunk in chunks:
        text = chunk.strip("\n")
        if not text:
            continue
        last = text.splitlines()[-1]
        m = _VALUE.match(last)
        if text.startswith(SECTION):
            items.append(("section", text))
        elif m and m.group(2) in Settings.model_fields:
            items.append(("setting", m.group(2)))
            # a commented-out example value is the author's; a live value is the default
            if last.startswith("#") and Settings.model_fields[m.group(2)].default is None:
                kept[m.group(2)] = last
        elif not items:
            header.append(text)
    present = {value for kind, value in items if kind == "setting"}
    names = list(Settings.model_fields)
    for i, name in enumerate(names):
        if name in present:
            continue
        before = names[i - 1] if i else None
        at = next(
            (k + 1 for k, item in enumerate(items) if item == ("setting", before)), len(items)
        )
        items.insert(at, ("setting", name))
        present.add(name)
    out = ["\n\n".join(header)]
    for kind, value in items:
        if kind == "section":
            out.append(value)
        elif value in Settings.model_fields:
            out.append(_block(value, Settings.model_fields[value], kept.get(value)))
    body = "\n\n".join(out).rstrip("\n") + "\n\n"
    return body + (TABLES + tail if tail else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pushwire.example_config")
    parser.add_argument("path", nargs="?", type=Path, default=Path("examples/pushwire.toml"))
    parser.add_argument("--write", action="store_true", help="rewrite the file in place")
    ns = parser.parse_args(argv)
    current = ns.path.read_text()
    wanted = render(current)
    if ns.write:
        ns.path.write_text(wanted)
        return 0
    if wanted != current:
        print(f"{ns.path} is out of date: run with --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
