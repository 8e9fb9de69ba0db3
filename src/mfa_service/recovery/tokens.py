"""Issuing a link: a new token (older ones of its purpose void) and its mail, in the
caller's transaction. Kept apart from `service` so accounts can send a verification link."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.clock import now
from mfa_service.errors import RateLimited
from mfa_service.mail import service as mail
from mfa_service.recovery import repository
from mfa_service.recovery.models import AccountToken
from mfa_service.services import Services

PASSWORD_RESET = "password_reset"
EMAIL_VERIFY = "email_verify"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def _issue(db: AsyncSession, svc: Services, user: User, purpose: str, ttl: int) -> str:
    token = secrets.token_urlsafe(32)  # 256 bits
    at = now(svc.clock)
    # Two links issued at once (two instances' workers) must not both stay valid: the
    # second waits for the first to commit, then voids its token.
    await repository.lock_user(db, user.id)
    await repository.void_all(db, user.id, purpose, at)
    db.add(
        AccountToken(
            user_id=user.id,
            purpose=purpose,
            token_hash=hash_token(token),
            created_at=at,
            expires_at=at + timedelta(seconds=ttl),
        )
    )
    return token


async def send_password_reset(db: AsyncSession, svc: Services, user: User) -> None:
    token = await _issue(db, svc, user, PASSWORD_RESET, svc.settings.password_reset_ttl)
    mail.send_password_reset(db, svc, user.id, token)


async def send_verification(db: AsyncSession, svc: Services, user: User, *, quiet: bool) -> None:
    """A verification link, at most `MFA_EMAIL_VERIFY_MAX` per user and window; beyond that
    RateLimited, or (`quiet`) nothing sent."""
    try:
        await svc.login_limiter.count(
            "verify-mail",
            user.id.hex,
            svc.settings.email_verify_max,
            svc.settings.password_reset_window_seconds,
        )
    except RateLimited:
        if quiet:
            return
        raise
    token = await _issue(db, svc, user, EMAIL_VERIFY, svc.settings.email_verify_ttl)
    mail.send_verification(db, svc, user.id, token)
