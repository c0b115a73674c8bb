"""The `pushwire` command: serve, pub, sub, admin commands, bench.

Start-up cost is paid per command (and the test suite starts dozens of them), so this module
and the parser imports only light modules: every subcommand's parser is built from them, and
what a command runs (the server, the settings model and pydantic, the stores, redis, the
client libraries) is imported by its handler. `serve`'s flags are generated from the Settings
model, so its parser is filled in only when `serve` is the command (_LazyParser).
tests/unit/test_cli_imports.py checks what each command imports.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pushwire import __version__
from pushwire.admin_cli import ADMIN_COMMANDS, add_admin_commands, run_admin_command
from pushwire.cli_pub import add_pub_command, run_pub
from pushwire.cli_sub import add_sub_command, run_sub
from pushwire.gateway.cli import GATEWAY_COMMANDS, add_gateway_commands, run_gateway_command

if TYPE_CHECKING:
    from pydantic import ValidationError


class _LazyParser(argparse.ArgumentParser):
    """A parser whose arguments are added by `fill` the first time it parses or formats
    its help, so a subcommand's expensive arguments cost nothing to the other commands."""

    def __init__(
        self, *args: Any, fill: Callable[[argparse.ArgumentParser], None] | None = None, **kw: Any
    ) -> None:
        super().__init__(*args, **kw)
        self._fill = fill

    def _filled(self) -> None:
        fill, self._fill = self._fill, None
        if fill is not None:
            fill(self)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._filled()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._filled()
        return super().format_usage()

    def format_help(self) -> str:
        self._filled()
        return super().format_help()


def _add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per setting, generated from the Settings model so they never drift."""
    from pushwire.config import Settings
    from pushwire.settings_doc import default_text

    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = (
            f"{field.description} (env PUSHWIRE_{name.upper()}, default {default_text(field)})"
        )
        annotation = field.annotation
        if annotation is bool:
            parser.add_argument(
                flag,
                dest=name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
            continue
        parser.add_argument(
            flag, dest=name, type=_converter(annotation), default=None, help=help_text
        )


def _converter(annotation: Any) -> Any:
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    return annotation if annotation in (int, float, str, Path) else str


def _add_serve_arguments(serve: argparse.ArgumentParser) -> None:
    serve.add_argument(
        "--config", type=Path, default=None, help="TOML file with settings (env PUSHWIRE_CONFIG)"
    )
    _add_settings_flags(serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushwire", description="pushwire push server")
    parser.add_argument("--version", action="version", version=f"pushwire {__version__}")
    # every subcommand's parser is a _LazyParser (filled on use when given `fill`); the
    # add_*_commands helpers only need them to be ArgumentParsers
    sub = typing.cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(dest="command", required=True, parser_class=_LazyParser),
    )
    sub.add_parser("serve", help="run the server", fill=_add_serve_arguments)
    add_pub_command(sub)
    add_sub_command(sub)
    add_admin_commands(sub)
    add_gateway_commands(sub)
    bench = sub.add_parser("bench", help="side-by-side benchmarks (see bench/README.md)")
    bench.add_argument("suite", choices=["mqtt", "http", "modes", "gateway", "cluster"])
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def settings_errors(exc: ValidationError) -> list[str]:
    """One line per problem, named as the user wrote it (flag and env var), without
    pydantic's internals and documentation links."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = [str(part) for part in err["loc"]]
        if not loc:  # a rule across settings (e.g. --workers needs --engine redis)
            lines.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        name = loc[0]
        where = f"--{name.replace('_', '-')} (PUSHWIRE_{name.upper()})"
        if len(loc) > 1:
            where += " at " + ".".join(loc[1:])
        value = err.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) else ""
        lines.append(f"{where}: {err['msg']}{shown}")
    return lines


def _serve(ns: argparse.Namespace) -> int:
    import logging

    from pydantic import ValidationError

    from pushwire.config import Settings, load_settings
    from pushwire.process import LOG_FORMAT, run_server

    overrides = {
        name: getattr(ns, name) for name in Settings.model_fields if getattr(ns, name) is not None
    }
    config = ns.config
    if config is None:
        env = __import__("os").environ.get("PUSHWIRE_CONFIG")
        config = Path(env) if env else None
    try:
        settings = load_settings(config, **overrides)
    except ValidationError as exc:
        for line in settings_errors(exc):
            print(f"pushwire: bad setting {line}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT, stream=sys.stderr)
    if settings.workers > 1:
        from pushwire.workers import run_supervisor

        return run_supervisor(settings)
    return run_server(settings)


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.command == "serve":
        return _serve(ns)
    if ns.command == "pub":
        return run_pub(ns)
    if ns.command == "sub":
        return run_sub(ns)
    if ns.command in ADMIN_COMMANDS:
        return run_admin_command(ns)
    if ns.command in GATEWAY_COMMANDS:
        return run_gateway_command(ns)
    if ns.command == "bench":
        if ns.suite == "http":
            from pushwire.bench.http import main as bench_main
        elif ns.suite == "modes":
            from pushwire.bench.modes import main as bench_main
        elif ns.suite == "gateway":
            from pushwire.bench.gateway import main as bench_main
        elif ns.suite == "cluster":
            from pushwire.bench.cluster import main as bench_main
        else:
            from pushwire.bench.mqtt import main as bench_main

        return bench_main(ns.args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
