"""mfa-service: serve the API, migrate the database, manage signing keys, operate accounts."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import threading
from collections.abc import Sequence

import sqlalchemy.exc
import uvicorn
from pydantic import ValidationError
from uvicorn.config import LOG_LEVELS

from mfa_service import migrations
from mfa_service.admin import cli as admin_cli
from mfa_service.app import VERSION, prepare_storage
from mfa_service.clock import SystemClock, now
from mfa_service.config import Settings
from mfa_service.db import create_engine, create_sessionmaker
from mfa_service.observability import logs, metrics
from mfa_service.redis_client import UNAVAILABLE as REDIS_UNAVAILABLE
from mfa_service.secretbox import DataKeyError, generate_data_key, load_secret_box
from mfa_service.tokens import keys
from mfa_service.webhooks import cli as webhooks_cli

# A server that does not answer: said in one line, not a traceback.
UNREACHABLE: tuple[type[Exception], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,  # a host name that does not resolve
    *REDIS_UNAVAILABLE,
)


EPILOG = (
    "Settings come from MFA_* environment variables (README: Configuration); with none set "
    "it runs the embedded default: SQLite and generated keys in ./data, Redis emulated "
    "in-process."
)


def _formatter(prog: str) -> argparse.HelpFormatter:
    # Every option's default in its help line.
    return argparse.ArgumentDefaultsHelpFormatter(prog, max_help_position=32)


def _port(text: str) -> int:
    port = int(text)  # a ValueError is argparse's "invalid _port value"
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a TCP port (0-65535)")
    return port


def _positive(text: str) -> int:
    number = int(text)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{number} is not at least 1")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mfa-service", description=__doc__, epilog=EPILOG, formatter_class=_formatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the HTTP API with uvicorn",
        description="Run the HTTP API with uvicorn. On SQLite the schema is migrated first; "
        "on PostgreSQL a schema that is not at head is refused (run `db upgrade`).",
        formatter_class=_formatter,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8000, help="TCP port to listen on")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes; more than 1 needs MFA_REDIS_URL and a PostgreSQL MFA_DATABASE_URL",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=LOG_LEVELS,
        help="log level of uvicorn and the service",
    )

    db = commands.add_parser(
        "db", help="database schema", description="Database schema.", formatter_class=_formatter
    )
    db_commands = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_commands.add_parser(
        "upgrade",
        help="apply every Alembic migration (to head)",
        description="Apply every Alembic migration to MFA_DATABASE_URL (to head).",
        formatter_class=_formatter,
    )
    admin_cli.add_db_prune(db_commands, _formatter)

    key = commands.add_parser(
        "keys",
        help="signing and data keys",
        description="Signing keys (in the database) and the data key.",
        formatter_class=_formatter,
    )
    key_commands = key.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_commands.add_parser(
        "list",
        help="the signing keys and their state",
        description="The signing keys and their state: active, retired but still published, "
        "retired, revoked.",
        formatter_class=_formatter,
    )
    key_commands.add_parser(
        "rotate",
        help="make a new signing key active",
        description="Make a new signing key (of MFA_JWT_ALGORITHM) active; the old one stays "
        "published until every token it signed has expired.",
        formatter_class=_formatter,
    )
    revoke_help = (
        "emergency: unpublish a signing key and refuse its tokens (within 10 s); "
        "a new key signs at once if it was the active one"
    )
    revoke = key_commands.add_parser(
        "revoke",
        help=revoke_help,
        description=revoke_help[0].upper() + revoke_help[1:] + ". An unknown KID exits 1.",
        formatter_class=_formatter,
    )
    revoke.add_argument(
        "kid",
        metavar="KID",
        help="the key's id, as `keys list` shows it (`-- KID` if it begins with -)",
    )
    key_commands.add_parser(
        "generate-data-key",
        help="print a new value for MFA_DATA_KEY",
        description="Print a new value for MFA_DATA_KEY (url-safe base64 of 32 random bytes).",
        formatter_class=_formatter,
    )
    admin_cli.add_commands(commands, _formatter)
    webhooks_cli.add_commands(commands, _formatter)
    return parser


def _quiet_aiosqlite_teardown(args: threading.ExceptHookArgs) -> None:
    """aiosqlite, when a connection cannot be opened, queues the close without awaiting it;
    its thread then answers a loop that `asyncio.run` has closed meanwhile, and the traceback
    would follow our one-line message. Only that is silenced."""
    if (
        args.exc_type is RuntimeError
        and str(args.exc_value) == "Event loop is closed"
        and args.thread is not None
        and "_connection_worker_thread" in args.thread.name
    ):
        return
    threading.__excepthook__(args)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    threading.excepthook = _quiet_aiosqlite_teardown
    level = LOG_LEVELS[getattr(args, "log_level", "info")]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "keys" and args.keys_command == "generate-data-key":
        print(generate_data_key())
        return 0
    try:
        settings = Settings()
    except ValidationError as exc:
        # Only where and why: pydantic's own text repeats the input, which may be a secret.
        for error in exc.errors(include_input=False, include_url=False):
            where = "MFA_" + "_".join(str(part) for part in error["loc"]).upper()
            if not error["loc"]:
                where = "settings"
            print(f"mfa-service: configuration error: {where}: {error['msg']}", file=sys.stderr)
        return 2
    logs.configure(settings.effective_log_format, level)
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers, args.log_level)
        if args.command == "users":
            return asyncio.run(
                admin_cli.run_users(settings, args.users_command, args.email, args.json)
            )
        if args.command == "audit":
            return asyncio.run(admin_cli.run_audit_export(settings, args.since, args.user))
        if args.command == "db" and args.db_command == "prune":
            return asyncio.run(admin_cli.run_prune(settings, args.json))
        if args.command == "webhooks":
            return asyncio.run(webhooks_cli.run(settings, args))
        if args.command == "db":
            asyncio.run(_upgrade(settings))
            print("database schema is at head")
            return 0
        return asyncio.run(_keys(settings, args.keys_command, getattr(args, "kid", None)))
    except keys.UnknownSigningKey as exc:
        print(f"mfa-service: {exc}", file=sys.stderr)
        return 1
    except (DataKeyError, keys.SigningKeyMissing, migrations.SchemaOutdated) as exc:
        print(f"mfa-service: {exc}", file=sys.stderr)
        return 2
    # What the user can fix (a URL, a server that is down, a path), in one line each. Never
    # the exception's whole text: SQLAlchemy's repeats statements and their parameters.
    except UNREACHABLE as exc:
        print(
            f"mfa-service: the database or Redis is unreachable ({type(exc).__name__}): check "
            "MFA_DATABASE_URL and MFA_REDIS_URL, and that the servers run",
            file=sys.stderr,
        )
        return 1
    except sqlalchemy.exc.DBAPIError as exc:
        # The driver's own message: `database "x" does not exist`, `unable to open database
        # file`, `password authentication failed for user "x"` (never the password).
        reason = str(exc.orig).strip().splitlines()[0][:200] if str(exc.orig).strip() else ""
        print(f"mfa-service: database error: {reason}; check MFA_DATABASE_URL", file=sys.stderr)
        return 1
    except OSError as exc:  # the data dir or a file in it
        print(f"mfa-service: {exc.strerror or type(exc).__name__}: {exc.filename}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(settings: Settings, host: str, port: int, workers: int, log_level: str) -> int:
    if workers > 1 and not settings.redis_url:
        print(
            "mfa-service: --workers > 1 needs MFA_REDIS_URL: the in-process Redis emulation "
            "cannot be shared between processes",
            file=sys.stderr,
        )
        return 2
    if workers > 1 and settings.is_sqlite:
        print(
            "mfa-service: --workers > 1 needs MFA_DATABASE_URL (PostgreSQL): SQLite takes one "
            "writer at a time, and several processes queueing for it answer 503 under load; "
            "the embedded default runs one worker",
            file=sys.stderr,
        )
        return 2
    # Once, before the workers start and race each other: the development data key, the
    # embedded SQLite schema, the first signing key.
    asyncio.run(_prepare(settings))
    # Several workers count into one directory of memory-mapped files, emptied first.
    multiproc = None
    if workers > 1 or os.environ.get(metrics.MULTIPROC_ENV):
        multiproc = metrics.prepare_multiprocess_dir()
    try:
        uvicorn.run(
            "mfa_service.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            # Applied in every worker: uvicorn's own lines through our formatter too; its
            # access log off (the app writes one line per request, with the request id).
            log_config=logs.dict_config(settings.effective_log_format, LOG_LEVELS[log_level]),
            access_log=False,
            # We read X-Forwarded-For ourselves, only from MFA_TRUSTED_PROXIES; uvicorn would
            # otherwise trust it from 127.0.0.1.
            proxy_headers=False,
            forwarded_allow_ips="",
            server_header=False,
        )
    finally:
        if multiproc is not None:
            metrics.remove_multiprocess_dir(multiproc)
    return 0


async def _prepare(settings: Settings) -> None:
    box = load_secret_box(settings)
    engine = create_engine(settings)
    try:
        await prepare_storage(engine, box, settings, SystemClock())
    finally:
        await engine.dispose()


async def _upgrade(settings: Settings) -> None:
    engine = create_engine(settings)
    try:
        await migrations.upgrade(engine)
    finally:
        await engine.dispose()


async def _keys(settings: Settings, command: str, kid: str | None) -> int:
    engine = create_engine(settings)
    clock = SystemClock()
    try:
        await migrations.check_at_head(engine)
        async with create_sessionmaker(engine)() as db:
            if command == "rotate":
                row = await keys.create_key(
                    db, load_secret_box(settings), settings.jwt_algorithm, clock
                )
                await db.commit()
                print(f"new active signing key {row.kid} ({row.algorithm})")
            elif command == "revoke":
                assert kid is not None
                try:
                    new = await keys.revoke_key(db, load_secret_box(settings), settings, clock, kid)
                except keys.SigningKeyAlreadyRevoked as exc:
                    # The state asked for holds: said, not failed (a retried runbook step).
                    await db.rollback()
                    print(exc)
                else:
                    await db.commit()
                    print(
                        f"revoked signing key {kid}: every instance stops publishing it and "
                        "refuses its tokens within 10 s"
                    )
                    if new is not None:
                        print(f"new active signing key {new.kid} ({new.algorithm}), signing now")
            rows = await keys.list_keys(db)
    finally:
        await engine.dispose()
    print(f"{'kid':<20} {'alg':<6} {'created':<26} state")
    for r in rows:
        if r.revoked_at is not None:
            state = f"revoked {r.revoked_at.isoformat(timespec='seconds')}"
        elif r.retired_at is None:
            state = "active"
        elif (now(clock) - r.retired_at).total_seconds() < settings.access_token_ttl + 60:
            state = f"retired {r.retired_at.isoformat(timespec='seconds')}, still published"
        else:
            state = f"retired {r.retired_at.isoformat(timespec='seconds')}"
        print(
            f"{r.kid:<20} {r.algorithm:<6} {r.created_at.isoformat(timespec='seconds'):<26} {state}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
