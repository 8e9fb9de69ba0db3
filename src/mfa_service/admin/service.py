"""What an operator does to one account (`mfa-service users …`). Each action is one
transaction with its audit event (actor `cli`), and acts on the shared database and Redis, so
every running instance sees it at once: sessions end at the next request, locks are gone at
the next attempt."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository as accounts
from mfa_service.accounts.models import User
from mfa_service.accounts.service import normalise_email
from mfa_service.audit import service as audit
from mfa_service.challenges import store as challenges
from mfa_service.clock import now
from mfa_service.devices import service as devices
from mfa_service.factors.backup_codes.models import BackupCode
from mfa_service.factors.totp.models import TotpCredential
from mfa_service.factors.webauthn.models import WebAuthnCredential
from mfa_service.net import Client
from mfa_service.redis_keys import UserKeys
from mfa_service.services import Services
from mfa_service.sessions import repository as sessions_repository
from mfa_service.sessions import service as sessions
from mfa_service.sessions.models import Session

# Who acted, in the audit event: the address and user agent columns say it too.
CLI = Client(ip="cli", user_agent="mfa-service command line")
ACTOR = "cli"


class UnknownUser(LookupError):
    def __init__(self, email: str) -> None:
        super().__init__(f"no user with email {email!r}")


@dataclass
class UserReport:
    """What `users show` prints; never a hash, secret or code."""

    id: uuid.UUID
    email: str
    created_at: datetime
    password_changed_at: datetime
    email_verified: bool
    disabled_at: datetime | None
    mfa_enabled: bool
    totp: bool
    webauthn_credentials: int
    backup_codes_left: int
    live_sessions: int
    factor_locked_until: datetime | None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in self.__dict__.items():
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, uuid.UUID):
                value = str(value)
            out[name] = value
        return out


async def find_user(db: AsyncSession, email: str) -> User:
    user = await accounts.get_by_email(db, normalise_email(email))
    if user is None:
        raise UnknownUser(email)
    return user


async def show(db: AsyncSession, svc: Services, email: str) -> UserReport:
    user = await find_user(db, email)
    at = now(svc.clock)
    idle_since = at - timedelta(seconds=svc.settings.session_idle_timeout)
    totp = await db.exec(
        select(func.count())
        .select_from(TotpCredential)
        .where(col(TotpCredential.user_id) == user.id)
        .where(col(TotpCredential.confirmed_at).is_not(None))
    )
    webauthn = await db.exec(
        select(func.count())
        .select_from(WebAuthnCredential)
        .where(col(WebAuthnCredential.user_id) == user.id)
    )
    codes = await db.exec(
        select(func.count())
        .select_from(BackupCode)
        .where(col(BackupCode.user_id) == user.id, col(BackupCode.used_at).is_(None))
    )
    live = await sessions_repository.live_for_user(db, user.id, at, idle_since)
    locked = await svc.redis.hget(UserKeys(svc.settings.redis_prefix, user.id).factor, "l")
    locked_ms = int(locked or 0)
    return UserReport(
        id=user.id,
        email=user.email,
        created_at=user.created_at,
        password_changed_at=user.password_changed_at,
        email_verified=user.email_verified,
        disabled_at=user.disabled_at,
        mfa_enabled=user.mfa_enabled,
        totp=bool(totp.one()),
        webauthn_credentials=int(webauthn.one()),
        backup_codes_left=int(codes.one()),
        live_sessions=len(live),
        factor_locked_until=(
            datetime.fromtimestamp(locked_ms / 1000, at.tzinfo)
            if locked_ms > svc.clock.time() * 1000
            else None
        ),
    )


async def unlock(db: AsyncSession, svc: Services, email: str) -> dict[str, Any]:
    """The second-factor lock and failures, and the account's password counters (from every
    address), cleared in Redis: the next attempt on any instance starts afresh."""
    user = await find_user(db, email)
    factor = await svc.redis.delete(UserKeys(svc.settings.redis_prefix, user.id).factor)
    password = await svc.login_limiter.clear_account(user.email)
    audit.record(db, svc, CLI, "account.unlocked", user.id, actor=ACTOR)
    return {"user_id": str(user.id), "factor_counter": bool(factor), "password_counters": password}


async def revoke_sessions(db: AsyncSession, svc: Services, email: str) -> dict[str, Any]:
    """Every session ends (its refresh token at once, its access tokens at our endpoints and
    introspection), and every pending challenge."""
    user = await find_user(db, email)
    count = await _live_count(db, svc, user.id)
    await sessions_repository.revoke_all_for_user(db, user.id, now(svc.clock), "revoked_by_admin")
    await challenges.revoke_all(svc, user.id)
    audit.record(db, svc, CLI, "account.sessions_revoked", user.id, actor=ACTOR)
    return {"user_id": str(user.id), "sessions_revoked": count}


async def reset_mfa(db: AsyncSession, svc: Services, email: str) -> dict[str, Any]:
    """For a user who lost every factor: TOTP, WebAuthn credentials and backup codes removed,
    MFA off, every session, pending challenge and remembered device gone. The user signs in
    with the password alone and enrolls again."""
    user = await find_user(db, email)
    count = await _live_count(db, svc, user.id)
    removed = {}
    for name, model in (
        ("totp", TotpCredential),
        ("webauthn_credentials", WebAuthnCredential),
        ("backup_codes", BackupCode),
    ):
        result = await db.exec(delete(model).where(col(model.user_id) == user.id))
        removed[name] = int(result.rowcount)
    user.mfa_enabled = False
    db.add(user)
    await devices.forget_all(db, user.id)
    # The credentials version moves on: logins and challenges in flight die with the rest.
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=None, reason="mfa_reset")
    audit.record(db, svc, CLI, "account.mfa_reset", user.id, actor=ACTOR)
    return {"user_id": str(user.id), "removed": removed, "sessions_revoked": count}


async def disable(db: AsyncSession, svc: Services, email: str) -> dict[str, Any]:
    """No login, refresh or session for the user until `enable`; sessions end now."""
    user = await find_user(db, email)
    count = await _live_count(db, svc, user.id)
    already = user.disabled_at is not None
    if not already:
        user.disabled_at = now(svc.clock)
        db.add(user)
    await sessions.sign_out_elsewhere(db, svc, user.id, keep=None, reason="disabled")
    audit.record(db, svc, CLI, "account.disabled", user.id, actor=ACTOR)
    return {
        "user_id": str(user.id),
        "disabled_at": user.disabled_at.isoformat() if user.disabled_at else None,
        "already_disabled": already,
        "sessions_revoked": count,
    }


async def enable(db: AsyncSession, svc: Services, email: str) -> dict[str, Any]:
    """The user may log in again; sessions ended by `disable` stay ended."""
    user = await find_user(db, email)
    was = user.disabled_at is not None
    user.disabled_at = None
    db.add(user)
    audit.record(db, svc, CLI, "account.enabled", user.id, actor=ACTOR)
    return {"user_id": str(user.id), "was_disabled": was}


async def _live_count(db: AsyncSession, svc: Services, user_id: uuid.UUID) -> int:
    at = now(svc.clock)
    query = (
        select(func.count())
        .select_from(Session)
        .where(
            col(Session.user_id) == user_id,
            col(Session.revoked_at).is_(None),
            col(Session.expires_at) > at,
        )
    )
    return int((await db.exec(query)).one())
