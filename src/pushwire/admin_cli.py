"""`pushwire user ...`, `pushwire token ...`, `pushwire acl ...`: offline administration.

These commands work on the data directory's database directly (its `auth_*` tables), with
or without a server running on it: a running server notices the change within about a
second (see engines/auth_store.py) and, for a revoked token or a removed user, closes the
connections that used it.

Mount them in the main parser with `add_admin_commands(subparsers)` and dispatch with
`run_admin_command(ns)` when `ns.command in ADMIN_COMMANDS`; or run this module on its own
(`python -m pushwire.admin_cli user list`).

Exit codes: 0 done, 1 not found / already exists / store error, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    # imported where a command runs, not here: every `pushwire` command builds this parser
    # (tests/unit/test_cli_imports.py), and the stores, redis and pydantic cost ~0.2 s to import
    from pushwire.core.acl import SubjectKind
    from pushwire.core.auth_admin import AuthAdmin
    from pushwire.core.tokens import TokenInfo
    from pushwire.ports import AuthStore

    Handler = Callable[[argparse.Namespace, AuthAdmin], int]

ADMIN_COMMANDS: Final = ("user", "token", "acl")
DATA_DIR_ENV: Final = "PUSHWIRE_DATA_DIR"
# the server's own settings variables: with engine redis the commands edit Redis
ENGINE_ENV: Final = "PUSHWIRE_ENGINE"
REDIS_URL_ENV: Final = "PUSHWIRE_REDIS_URL"
SCRAM_ITERATIONS_ENV: Final = "PUSHWIRE_SCRAM_ITERATIONS"
DEFAULT_DATA_DIR: Final = "pushwire-data"

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2


class UsageError(Exception):
    """Bad input noticed after parsing (exit 2)."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"the server's data directory (env {DATA_DIR_ENV}, default ./{DEFAULT_DATA_DIR})",
    )
    return common


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def add_admin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `user`, `token` and `acl` command groups to a subparsers action."""
    common = _common()

    # -- user ----------------------------------------------------------------------------
    user = sub.add_parser("user", help="manage users (password logins)")
    users = user.add_subparsers(dest="user_command", required=True, metavar="COMMAND")

    p = users.add_parser("add", parents=[common], help="add a user")
    p.add_argument("name")
    p.add_argument(
        "--role",
        action="append",
        default=[],
        dest="roles",
        metavar="ROLE",
        help="a role of the user (repeatable); role 'admin' reads $SYS and administers",
    )
    p.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of stdin (default: prompt on a TTY)",
    )
    p.set_defaults(admin_handler=_user_add)

    p = users.add_parser("passwd", parents=[common], help="set a user's password")
    p.add_argument("name")
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.set_defaults(admin_handler=_user_passwd)

    p = users.add_parser("remove", parents=[common], help="remove a user and its tokens")
    p.add_argument("name")
    p.set_defaults(admin_handler=_user_remove)

    p = users.add_parser("list", parents=[common], help="list users")
    _json_flag(p)
    p.set_defaults(admin_handler=_user_list, read_only=True)

    # -- token ---------------------------------------------------------------------------
    token = sub.add_parser("token", help="manage access tokens (Bearer, ?auth=, MQTT password)")
    tokens = token.add_subparsers(dest="token_command", required=True, metavar="COMMAND")

    p = tokens.add_parser("create", parents=[common], help="create a token (shown once)")
    p.add_argument("--user", required=True, help="the user the token acts as")
    p.add_argument(
        "--expires",
        default="never",
        help="lifetime: 30d, 12h, 15m, 45s, 2w or never (default never)",
    )
    p.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="restrict the token (repeatable): read:FILTER, write:FILTER, readwrite:FILTER, "
        "admin; none: the user's full rights",
    )
    p.add_argument("--name", default=None, help="a label to recognise the token by")
    _json_flag(p)
    p.set_defaults(admin_handler=_token_create)

    p = tokens.add_parser("list", parents=[common], help="list tokens (never their secrets)")
    p.add_argument("--user", default=None, help="only this user's tokens")
    _json_flag(p)
    p.set_defaults(admin_handler=_token_list, read_only=True)

    p = tokens.add_parser("revoke", parents=[common], help="revoke a token")
    p.add_argument("id", help="the token id (or the whole token)")
    p.set_defaults(admin_handler=_token_revoke)

    # -- acl -----------------------------------------------------------------------------
    acl = sub.add_parser("acl", help="manage topic access rules")
    acls = acl.add_subparsers(dest="acl_command", required=True, metavar="COMMAND")

    p = acls.add_parser(
        "add",
        parents=[common],
        help="add a rule",
        description="Allow or deny read, write or readwrite on a topic filter (+, #, and "
        "%u / %c for the username / client id). Deny wins over allow; once any rule "
        "exists, what no rule allows is denied. Quote filters with # in the shell.",
    )
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="the rule applies to this user")
    who.add_argument("--role", help="the rule applies to users with this role")
    who.add_argument("--anonymous", action="store_true", help="applies to anonymous clients")
    who.add_argument("--all", action="store_true", help="applies to every client")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--allow", action="store_const", const="allow", dest="access")
    how.add_argument("--deny", action="store_const", const="deny", dest="access")
    p.add_argument("permission", choices=["read", "write", "readwrite"])
    p.add_argument("filter", help="topic filter, e.g. 'news/#' or 'users/%%u/#'")
    p.set_defaults(admin_handler=_acl_add)

    p = acls.add_parser("list", parents=[common], help="list rules")
    _json_flag(p)
    p.set_defaults(admin_handler=_acl_list, read_only=True)

    p = acls.add_parser("remove", parents=[common], help="remove a rule by id")
    p.add_argument("id", type=int)
    p.set_defaults(admin_handler=_acl_remove)


def _scram_iterations() -> int:
    """The server's `scram_iterations` setting as its environment variable gives it, so the
    CLI makes SCRAM verifiers like the server's admin API does."""
    from pushwire.core.scram import MAX_ITERATIONS, MIN_ITERATIONS

    text = os.environ.get(SCRAM_ITERATIONS_ENV)
    if not text:
        return MIN_ITERATIONS
    if not text.strip().isdigit() or not MIN_ITERATIONS <= int(text) <= MAX_ITERATIONS:
        raise UsageError(
            f"{SCRAM_ITERATIONS_ENV} must be a whole number from {MIN_ITERATIONS} to "
            f"{MAX_ITERATIONS}"
        )
    return int(text)


def run_admin_command(
    ns: argparse.Namespace, *, stdin: TextIO | None = None, stdout: TextIO | None = None
) -> int:
    """Run the command `add_admin_commands` parsed into `ns`; returns the exit code."""
    handler: Handler | None = getattr(ns, "admin_handler", None)
    out = stdout or sys.stdout
    if handler is None:
        print("pushwire: missing command (see --help)", file=sys.stderr)
        return EXIT_USAGE
    ns.stdin = stdin or sys.stdin
    ns.stdout = out
    import sqlite3

    from pushwire.core.acl import AclError
    from pushwire.core.auth_admin import AuthAdmin
    from pushwire.engines.auth_store import (
        DB_FILENAME,
        AuthStoreError,
        MemoryAuthStore,
        SQLiteAuthStore,
    )

    # only a Redis store raises Redis errors: redis (and the settings model naming its
    # default URL) is imported for engine=redis only
    redis_errors: tuple[type[Exception], ...] = ()
    data_dir = ns.data_dir or Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)
    store: AuthStore = SQLiteAuthStore.in_data_dir(data_dir)
    where = str(data_dir / DB_FILENAME)
    if os.environ.get(ENGINE_ENV) == "redis":
        import redis

        from pushwire.config import Settings
        from pushwire.engines.redis.auth_store import RedisAuthStore

        redis_errors = (redis.RedisError,)
        # engine=redis servers keep users, tokens and rules in Redis: edit them there
        where = os.environ.get(REDIS_URL_ENV) or Settings.model_fields["redis_url"].default
        store = RedisAuthStore(where)
    elif getattr(ns, "read_only", False) and not (data_dir / DB_FILENAME).exists():
        store = MemoryAuthStore()  # nothing stored yet: do not create a data dir to list it
    open_errors: tuple[type[Exception], ...] = (sqlite3.Error, RuntimeError, OSError, *redis_errors)
    try:
        store.open()
    except open_errors as exc:
        print(f"pushwire: cannot open {where}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return handler(ns, AuthAdmin(store, scram_iterations=_scram_iterations()))
    except UsageError as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, AclError) as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except AuthStoreError as exc:
        print(f"pushwire: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except sqlite3.Error as exc:
        print(f"pushwire: database error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except redis_errors as exc:
        print(f"pushwire: Redis error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()


# -- helpers -------------------------------------------------------------------------------


def _when(t: float | None, never: str = "never") -> str:
    if t is None:
        return never
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _table(out: TextIO, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [header, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _read_password(ns: argparse.Namespace) -> str:
    stdin: TextIO = ns.stdin
    if not ns.password_stdin and stdin.isatty():
        import getpass

        first = getpass.getpass("Password: ")
        second = getpass.getpass("Repeat password: ")
        if first != second:
            raise UsageError("the passwords do not match")
        password = first
    else:
        password = stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("the password cannot be empty")
    return password


def _emit_json(ns: argparse.Namespace, value: Any) -> None:
    json.dump(value, ns.stdout, indent=2)
    print(file=ns.stdout)


def _token_dict(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "user": info.username,
        "name": info.name,
        "created": info.created,
        "expires": info.expires,
        "scope": list(info.scope),
        "last_used": info.last_used,
        "revoked": info.revoked,
        "status": info.status(),
    }


# -- handlers ------------------------------------------------------------------------------


def _user_add(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    password = _read_password(ns)
    info = admin.add_user(ns.name, password, ns.roles)
    roles = ", ".join(info.roles) or "none"
    print(f"user {info.username} added (roles: {roles})", file=ns.stdout)
    return EXIT_OK


def _user_passwd(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    if admin.store.get_user(ns.name) is None:  # before asking for a password
        print(f"pushwire: no user {ns.name!r}", file=sys.stderr)
        return EXIT_FAILED
    admin.set_password(ns.name, _read_password(ns))
    print(f"password of {ns.name} changed", file=ns.stdout)
    return EXIT_OK


def _user_remove(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    removed = admin.remove_user(ns.name)
    print(f"user {ns.name} removed ({len(removed)} token(s) removed with it)", file=ns.stdout)
    return EXIT_OK


def _user_list(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    users = admin.list_users()
    if ns.json:
        _emit_json(
            ns,
            [
                {"name": u.username, "roles": list(u.roles), "created": u.created, "scram": u.scram}
                for u in users
            ],
        )
        return EXIT_OK
    # SCRAM "no": the password predates SCRAM credentials; `user passwd` makes them
    rows = [
        [u.username, ",".join(u.roles) or "-", _when(u.created), "yes" if u.scram else "no"]
        for u in users
    ]
    _table(ns.stdout, ["NAME", "ROLES", "CREATED", "SCRAM"], rows)
    return EXIT_OK


def _token_create(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    from pushwire.core.auth_input import parse_duration

    expires_in = parse_duration(ns.expires)
    new = admin.create_token(ns.user, expires_in=expires_in, scope=ns.scope, name=ns.name)
    if ns.json:
        _emit_json(ns, {"token": new.token, **_token_dict(new.info)})
    else:
        print(new.token, file=ns.stdout)
        print(f"id: {new.info.id}", file=ns.stdout)
        print(f"expires: {_when(new.info.expires)}", file=ns.stdout)
    print("store the token now: it is not shown again", file=sys.stderr)
    return EXIT_OK


def _token_list(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    tokens = admin.list_tokens(ns.user)
    if ns.json:
        _emit_json(ns, [_token_dict(t) for t in tokens])
        return EXIT_OK
    rows = [
        [
            t.id,
            t.username,
            t.name or "-",
            t.status(),
            _when(t.expires),
            _when(t.last_used, "-"),
            " ".join(t.scope) or "(full)",
        ]
        for t in tokens
    ]
    _table(ns.stdout, ["ID", "USER", "NAME", "STATUS", "EXPIRES", "LAST USED", "SCOPE"], rows)
    return EXIT_OK


def _token_revoke(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    before = admin.store.get_token(ns.id)
    info = admin.revoke_token(ns.id)
    if before is not None and before.revoked is not None:
        print(f"token {info.id} was already revoked", file=ns.stdout)
    else:
        print(f"token {info.id} revoked", file=ns.stdout)
    return EXIT_OK


def _acl_add(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    from pushwire.core.acl import AclRule

    kind: SubjectKind
    subject: str | None
    if ns.user is not None:
        kind, subject = "user", ns.user
    elif ns.role is not None:
        kind, subject = "role", ns.role
    elif ns.anonymous:
        kind, subject = "anonymous", None
    else:
        kind, subject = "all", None
    rule = admin.add_rule(AclRule(kind, subject, ns.access, ns.permission, ns.filter))
    print(f"rule {rule.id} added: {rule}", file=ns.stdout)
    return EXIT_OK


def _acl_list(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    rules = admin.list_rules()
    if ns.json:
        _emit_json(ns, [r.to_dict() for r in rules])
        return EXIT_OK
    rows = [[str(r.id), r.describe_subject(), r.access, r.permission, r.filter] for r in rules]
    _table(ns.stdout, ["ID", "SUBJECT", "ACCESS", "PERMISSION", "FILTER"], rows)
    if not rules:
        print(
            "(no rules: every admitted client may read and write everything but $SYS)",
            file=ns.stdout,
        )
    return EXIT_OK


def _acl_remove(ns: argparse.Namespace, admin: AuthAdmin) -> int:
    rule = admin.remove_rule(ns.id)
    print(f"rule {rule.id} removed: {rule}", file=ns.stdout)
    return EXIT_OK


# -- standalone ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pushwire", description="pushwire administration")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_admin_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    return run_admin_command(ns)


if __name__ == "__main__":
    sys.exit(main())
