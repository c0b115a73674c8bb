"""The README's own shell commands work as written: every `pushwire ...` line is an invocation
the command accepts, and `pushwire` is put on PATH by the install step shown before it (or
the venv is activated)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from pushwire.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "cli.md", ROOT / "docs" / "deploy.md"]
ON_PATH = re.compile(r"^(pipx install \.|pip install \.|\. \.venv/bin/activate)(\s|$)")


def shell_lines(path: Path) -> list[str]:
    """The command lines of the ```sh blocks (continuations joined)."""
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", path.read_text(), re.S):
        joined = block.replace("\\\n", " ")
        lines.extend(line.strip() for line in joined.splitlines() if line.strip())
    return lines


def pushwire_argv(line: str) -> list[str] | None:
    """The arguments of a `pushwire ...` command in a shell line (after `sudo -u X`,
    before comments, pipes, redirections and `&`), or None."""
    if "|" in line:
        line = line.rsplit("|", 1)[1]  # `echo ... | pushwire pub ...`
    try:
        words = shlex.split(line, comments=True)
    except ValueError:
        return None
    while words[:1] == ["sudo"]:
        words = words[3:] if words[1:2] == ["-u"] else words[1:]
    if not words or words[0] not in ("pushwire", ".venv/bin/pushwire"):
        return None
    argv = []
    for word in words[1:]:
        if word in ("<<<", "&", "&&", ";", ">", "<") or word.startswith(("<", ">")):
            break
        argv.append(word)
    return argv


def documented_invocations() -> list[tuple[str, str]]:
    found = []
    for path in DOCS:
        for line in shell_lines(path):
            if pushwire_argv(line) is not None:
                found.append((path.name, line))
    return found


def test_the_readme_documents_pushwire_commands() -> None:
    names = {line.split()[1] for doc, line in documented_invocations() if doc == "README.md"}
    assert {"serve", "user", "acl", "token", "pub", "sub"} <= names, names


@pytest.mark.parametrize(
    ("doc", "line"),
    documented_invocations(),
    ids=[f"{doc}:{n}" for n, (doc, _) in enumerate(documented_invocations())],
)
def test_documented_invocation_is_accepted(doc: str, line: str) -> None:
    argv = pushwire_argv(line)
    assert argv is not None
    try:
        ns = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{doc}: `{line}` is not a valid pushwire command line (exit {exc.code})")
    assert ns.command == argv[0]


def test_readme_puts_pushwire_on_path_before_using_it() -> None:
    lines = shell_lines(ROOT / "README.md")
    first_use = next(i for i, line in enumerate(lines) if pushwire_argv(line) is not None)
    assert any(ON_PATH.match(line) for line in lines[:first_use]), lines[: first_use + 1]
    # and the checkout route activates the venv that `make run` creates
    assert any(line.startswith(". .venv/bin/activate") for line in lines[:first_use])


def test_readme_starts_with_the_two_set_up_commands() -> None:
    first_block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands == ["make run", "make test"]
