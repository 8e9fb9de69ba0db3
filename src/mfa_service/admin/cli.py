"""The operator's commands (SPEC §9): `users …`, `audit export`, `db prune`. They read the
same MFA_* settings as `serve` and act on the same database and Redis, so they work while the
service runs and take effect on every instance."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from mfa_service import migrations
from mfa_service.accounts.passwords import PasswordHasher
from mfa_service.admin import export, retention
from mfa_service.admin import service as admin
from mfa_service.audit import service as audit
from mfa_service.clock import SystemClock, now
from mfa_service.config import Settings
from mfa_service.db import create_engine, create_sessionmaker, create_statement_sessionmaker
from mfa_service.factors.throttle import FactorThrottle
from mfa_service.limits.attempts import AttemptLimiter
from mfa_service.limits.login import LoginLimiter
from mfa_service.outbox.worker import Outbox
from mfa_service.redis_client import create_redis
from mfa_service.secretbox import load_secret_box
from mfa_service.services import Services
from mfa_service.tokens.keys import KeyStore

Formatter = Callable[[str], argparse.HelpFormatter]

USER_ACTIONS: dict[str, str] = {
    "show": "the account: factors, sessions, locks, whether it is disabled",
    "unlock": "clear the second-factor lock and the account's password limits",
    "reset-mfa": "remove every factor and backup code; end sessions and remembered devices",
    "revoke-sessions": "end every session of the user (and pending challenges)",
    "disable": "no login or refresh until `enable`; sessions end now",
    "enable": "allow logins again (ended sessions stay ended)",
}


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object, for scripts")


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 date or time (2026-11-01, 2026-11-01T09:00:00Z)"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def add_commands(commands: Any, formatter: Formatter) -> None:
    users = commands.add_parser(
        "users",
        help="an account: show, unlock, reset MFA, end sessions, disable",
        description="Operator actions on one account, found by email. Each is recorded as "
        "an audit event (actor `cli`) and takes effect on every running instance. An "
        "unknown email exits 1.",
        formatter_class=formatter,
    )
    actions = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    for name, text in USER_ACTIONS.items():
        action = actions.add_parser(
            name, help=text, description=text[0].upper() + text[1:] + ".", formatter_class=formatter
        )
        action.add_argument("email", metavar="EMAIL")
        _json_flag(action)

    audit_parser = commands.add_parser(
        "audit", help="audit events", description="Audit events.", formatter_class=formatter
    )
    audit_commands = audit_parser.add_subparsers(
        dest="audit_command", required=True, metavar="ACTION"
    )
    exporter = audit_commands.add_parser(
        "export",
        help="audit events as JSON lines on stdout, oldest first",
        description="Audit events as JSON lines on stdout, oldest first: id, at, type, "
        "user_id, email, ip, user_agent, detail.",
        formatter_class=formatter,
    )
    exporter.add_argument("--since", type=_when, help="only events at or after this time (UTC)")
    exporter.add_argument("--user", metavar="EMAIL", help="only this user's events")


def add_db_prune(db_commands: Any, formatter: Formatter) -> None:
    prune = db_commands.add_parser(
        "prune",
        help="delete expired sessions and tokens, old audit events and outbox rows",
        description="Delete sessions past their end or idle limit (and their refresh tokens), "
        "expired device tokens, used or expired reset and verification links, audit events "
        "older than MFA_AUDIT_RETENTION_DAYS, and outbox rows (mail, webhooks) delivered or "
        "given up more than MFA_OUTBOX_RETENTION_DAYS ago, in small batches: safe while the "
        "service runs.",
        formatter_class=formatter,
    )
    _json_flag(prune)


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    """The collaborators a request would get, built like the app's lifespan does (no key
    reload, no pool warm-up, no hashing threads started: the commands need none of them)."""
    # The schema check's own chatter is not the command's output.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    clock = SystemClock()
    engine = create_engine(settings)
    redis = create_redis(settings)
    hasher = PasswordHasher(settings)
    try:
        await migrations.check_at_head(engine)
        box = load_secret_box(settings)
        sessionmaker = create_sessionmaker(engine)
        limiter = AttemptLimiter(redis, clock)
        yield Services(
            settings=settings,
            clock=clock,
            engine=engine,
            sessionmaker=sessionmaker,
            statement_sessionmaker=create_statement_sessionmaker(engine),
            redis=redis,
            scripts=limiter.scripts,
            box=box,
            keys=KeyStore(sessionmaker, box, settings, clock),
            hasher=hasher,
            throttle=FactorThrottle(limiter, settings),
            login_limiter=LoginLimiter(limiter, settings),
            # Not started: what a command enqueues (a security notice of an audited
            # action) is delivered by the running service's workers.
            outbox=Outbox(engine, settings, clock),
        )
    finally:
        hasher.close()
        await redis.aclose()
        await engine.dispose()


def _fail(message: str) -> int:
    print(f"mfa-service: {message}", file=sys.stderr)
    return 1


def _emulated_redis_warning(settings: Settings, command: str) -> None:
    if settings.redis_url is None and command in ("unlock", "reset-mfa", "revoke-sessions"):
        print(
            "mfa-service: note: MFA_REDIS_URL is not set, so the locks and pending challenges "
            "of a running service (kept in its own process) are out of reach; the database "
            "changes take effect",
            file=sys.stderr,
        )


async def run_users(settings: Settings, command: str, email: str, as_json: bool) -> int:
    _emulated_redis_warning(settings, command)
    async with services(settings) as svc, svc.sessionmaker() as db:
        try:
            if command == "show":
                report = await admin.show(db, svc, email)
                result: dict[str, Any] = report.as_json()
                audit.record(db, svc, admin.CLI, "account.shown", report.id, actor=admin.ACTOR)
            else:
                action = {
                    "unlock": admin.unlock,
                    "reset-mfa": admin.reset_mfa,
                    "revoke-sessions": admin.revoke_sessions,
                    "disable": admin.disable,
                    "enable": admin.enable,
                }[command]
                result = {"action": command, "email": email, **await action(db, svc, email)}
            await db.commit()
        except admin.UnknownUser as exc:
            await db.rollback()
            return _fail(str(exc))
    if as_json:
        print(json.dumps(result, separators=(",", ":")))
    elif command == "show":
        width = max(len(name) for name in result)
        for name, value in result.items():
            print(f"{name:<{width}}  {'-' if value is None else value}")
    else:
        print(_sentence(command, email, result))
    return 0


def _sentence(command: str, email: str, result: dict[str, Any]) -> str:
    if command == "unlock":
        lock = "cleared" if result["factor_counter"] else "none"
        return (
            f"unlocked {email}: second-factor counter {lock}, "
            f"{result['password_counters']} password counter(s) cleared"
        )
    if command == "reset-mfa":
        removed = ", ".join(f"{n} {what}" for what, n in result["removed"].items())
        return (
            f"reset MFA of {email}: removed {removed}; {result['sessions_revoked']} session(s) "
            "ended, remembered devices forgotten; the user logs in with the password alone"
        )
    if command == "revoke-sessions":
        return f"ended {result['sessions_revoked']} session(s) of {email}"
    if command == "disable":
        state = "was already disabled" if result["already_disabled"] else "disabled"
        return f"{email} {state}; {result['sessions_revoked']} session(s) ended"
    return f"{email} {'enabled' if result['was_disabled'] else 'was not disabled; nothing changed'}"


async def run_audit_export(settings: Settings, since: datetime | None, email: str | None) -> int:
    async with services(settings) as svc:
        async with svc.sessionmaker() as db:
            user_id = None
            if email is not None:
                try:
                    user_id = (await admin.find_user(db, email)).id
                except admin.UnknownUser as exc:
                    return _fail(str(exc))
            audit.record(db, svc, admin.CLI, "audit.exported", user_id, actor=admin.ACTOR)
            await db.commit()
        async for event in export.events(svc.engine, since, user_id):
            sys.stdout.write(export.line(event) + "\n")
    sys.stdout.flush()
    return 0


async def run_prune(settings: Settings, as_json: bool) -> int:
    async with services(settings) as svc:
        pruned = await retention.prune(svc.engine, settings, now(svc.clock))
        counts = {name: str(value) for name, value in pruned.__dict__.items()}
        async with svc.sessionmaker() as db:
            audit.record(db, svc, admin.CLI, "db.pruned", None, actor=admin.ACTOR, **counts)
            await db.commit()
    if as_json:
        print(json.dumps(pruned.__dict__, separators=(",", ":")))
    else:
        print(
            f"pruned {pruned.sessions} session(s), {pruned.refresh_tokens} refresh token(s), "
            f"{pruned.device_tokens} device token(s), {pruned.account_tokens} link token(s), "
            f"{pruned.audit_events} audit event(s) older than "
            f"{settings.audit_retention_days} days, {pruned.outbox} outbox row(s) older than "
            f"{settings.outbox_retention_days} days"
        )
    return 0
