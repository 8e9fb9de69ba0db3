"""`mfa-service`: serve the API, migrate the database, manage signing keys."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from mfa_service import migrations
from mfa_service.app import prepare_storage
from mfa_service.clock import SystemClock, now
from mfa_service.config import Settings
from mfa_service.db import create_engine, create_sessionmaker
from mfa_service.secretbox import DataKeyError, generate_data_key, load_secret_box
from mfa_service.tokens import keys


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mfa-service", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_commands.add_parser("upgrade", help="apply every Alembic migration (to head)")

    key = commands.add_parser("keys", help="signing and data keys")
    key_commands = key.add_subparsers(dest="keys_command", required=True)
    key_commands.add_parser("list", help="the signing keys and their state")
    key_commands.add_parser("rotate", help="make a new signing key active")
    revoke = key_commands.add_parser(
        "revoke",
        help="emergency: unpublish a signing key and refuse its tokens (within 10 s); "
        "a new key signs at once if it was the active one",
    )
    revoke.add_argument("kid", help="the key's id, as `keys list` shows it")
    key_commands.add_parser("generate-data-key", help="print a new value for MFA_DATA_KEY")

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
    try:
        if args.command == "serve":
            return _serve(settings, args.host, args.port, args.workers, args.log_level)
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
    uvicorn.run(
        "mfa_service.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # We read X-Forwarded-For ourselves, only from MFA_TRUSTED_PROXIES; uvicorn would
        # otherwise trust it from 127.0.0.1.
        proxy_headers=False,
        forwarded_allow_ips="",
        server_header=False,
    )
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
