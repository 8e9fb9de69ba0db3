"""Sessions: start one after login, rotate its refresh token, end it."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import uuid
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository as accounts_repository
from mfa_service.audit import service as audit
from mfa_service.base import new_id
from mfa_service.challenges import store as challenges
from mfa_service.clock import now
from mfa_service.db import Row, write_staged
from mfa_service.errors import InvalidRefreshToken, InvalidToken, SessionNotFound
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions import repository
from mfa_service.sessions.models import RefreshToken, Session
from mfa_service.sessions.schemas import (
    LogoutScope,
    SessionList,
    SessionOut,
    TokenResponse,
)
from mfa_service.tokens.access import AccessClaims, mint_access_token, verify_access_token

SESSIONS = Session.__table__  # type: ignore[attr-defined]
REFRESH_TOKENS = RefreshToken.__table__  # type: ignore[attr-defined]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def authenticate(db: AsyncSession, svc: Services, token: str) -> AccessClaims:
    """An access token that is valid, not logged out, and whose session still lives (not
    revoked, not ended, made under the user's current credentials)."""
    claims = await verify_access_token(token, svc.keys, svc.settings, svc.clock)
    if await svc.redis.exists(svc.rkey("deny", claims.jti)):
        raise InvalidToken()
    # The database decides whether the session lives, so a lost Redis cannot revive a logout.
    live = await repository.get_live_session_user(db, claims.sid)
    if live is None or live[0] != claims.sub or now(svc.clock) >= live[1]:
        raise InvalidToken()
    return claims


async def start_session(
    db: AsyncSession,
    svc: Services,
    *,
    client: Client,
    user_id: uuid.UUID,
    amr: list[str],
    credentials_version: int,
) -> TokenResponse:
    """A new session, decided on the user's credentials at `credentials_version`: if they
    changed meanwhile (a password or factor change racing this login), it is born dead."""
    at = now(svc.clock)
    session_id = new_id()
    expires_at = at + timedelta(seconds=svc.settings.session_max_age)
    session_row = {
        "id": session_id,
        "user_id": user_id,
        "created_at": at,
        "auth_time": at,
        "amr": " ".join(amr),
        "last_refreshed_at": at,
        "expires_at": expires_at,
        "credentials_version": credentials_version,
        "ip": client.ip[:45],
        "user_agent": client.user_agent[:300],
    }
    # Every login and challenge ends here: the session, its refresh token and the request's
    # audit events go to the database in one round trip.
    return await _issue(
        db, svc, session_id, user_id, at, amr, at, expires_at, (SESSIONS, session_row)
    )


async def _issue(
    db: AsyncSession,
    svc: Services,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    auth_time: datetime,
    amr: list[str],
    at: datetime,
    session_end: datetime,
    *rows_first: Row,
) -> TokenResponse:
    """A new refresh token for the session (written after `rows_first`) and its pair."""
    refresh_token = secrets.token_urlsafe(32)
    refresh_row = {
        "id": new_id(),
        "session_id": session_id,
        "token_hash": hash_token(refresh_token),
        "created_at": at,
    }
    await write_staged(db, *rows_first, (REFRESH_TOKENS, refresh_row))
    return await _token_pair(
        svc,
        refresh_token,
        user_id=user_id,
        session_id=session_id,
        auth_time=auth_time,
        amr=amr,
        not_after=session_end,
    )


async def _token_pair(
    svc: Services,
    refresh_token: str,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    auth_time: datetime,
    amr: list[str],
    not_after: datetime,
) -> TokenResponse:
    """The refresh token with a new access token that expires with the session at the
    latest."""
    access_token, claims = mint_access_token(
        await svc.keys.ring(),
        svc.settings,
        svc.clock,
        user_id=user_id,
        session_id=session_id,
        auth_time=auth_time,
        amr=amr,
        not_after=not_after,
    )
    return TokenResponse(
        access_token=access_token, expires_in=claims.exp - claims.iat, refresh_token=refresh_token
    )


async def refresh(
    db: AsyncSession, svc: Services, client: Client, refresh_token: str
) -> TokenResponse:
    # Probing with made-up or stolen-and-rotated tokens is counted per client IP.
    attempt = await svc.login_limiter.reserve_ip("refresh", client.ip_bucket)
    at = now(svc.clock)
    next_token = secrets.token_urlsafe(32)
    try:
        rotation = await repository.rotate_refresh_token(
            db,
            hash_token(refresh_token),
            at,
            idle_since=at - timedelta(seconds=svc.settings.session_idle_timeout),
            next_hash=hash_token(next_token),
        )
    except BaseException:
        # Nothing was judged (the database failed): not a guess. Kept, an outage's refused
        # refreshes would lock every client behind the IP out once it is over.
        with contextlib.suppress(Exception):
            await svc.login_limiter.release(attempt)
        raise
    if rotation is None:
        await svc.login_limiter.settle(attempt, ok=False)
        raise InvalidRefreshToken()
    if rotation.reused:
        # A rotated token came back: whoever holds the family may be a thief. End it.
        await svc.login_limiter.settle(attempt, ok=False)
        await repository.revoke(db, rotation.session_id, at, "refresh_reuse")
        audit.record(db, svc, client, "refresh.reuse_detected", rotation.user_id)
        raise InvalidRefreshToken()
    await svc.login_limiter.settle(attempt, ok=True)  # a genuine token: not a guess
    if not rotation.rotated:  # revoked, ended, idle too long, or credentials changed
        raise InvalidRefreshToken()
    if svc.settings.require_mfa and "mfa" not in rotation.amr.split():
        # Made by a password alone before MFA_REQUIRE_MFA was turned on: it ends, and the
        # user's next login leads to enrollment.
        await repository.revoke(db, rotation.session_id, at, "mfa_required")
        audit.record(db, svc, client, "session.revoked", rotation.user_id, reason="mfa_required")
        raise InvalidRefreshToken()
    return await _token_pair(
        svc,
        next_token,
        user_id=rotation.user_id,
        session_id=rotation.session_id,
        auth_time=rotation.auth_time,
        amr=rotation.amr.split(),
        not_after=rotation.expires_at,
    )


async def logout(
    db: AsyncSession,
    svc: Services,
    client: Client,
    claims: AccessClaims,
    refresh_token: str | None,
    scope: LogoutScope = "local",
) -> None:
    """`local` ends this session (and the one `refresh_token` belongs to, if it is the
    caller's), `others` every other session of the user, `global` all of them."""
    at = now(svc.clock)
    audit.record(db, svc, client, "logout", claims.sub, scope=scope)
    if scope == "others":
        await repository.revoke_all_for_user(db, claims.sub, at, "logout", keep=claims.sid)
        return
    ttl = max(1, claims.exp - int(svc.clock.time()))
    await svc.redis.set(svc.rkey("deny", claims.jti), b"1", ex=ttl)
    if scope == "global":
        await repository.revoke_all_for_user(db, claims.sub, at, "logout")
        return
    await repository.revoke(db, claims.sid, at, "logout")
    if refresh_token:
        found = await repository.find_refresh_token(db, hash_token(refresh_token))
        # Only the caller's own sessions; a stranger's token is silently ignored.
        if found is not None and found[1].user_id == claims.sub:
            await repository.revoke(db, found[1].id, at, "logout")


def _idle_since(svc: Services, at: datetime) -> datetime:
    return at - timedelta(seconds=svc.settings.session_idle_timeout)


async def list_sessions(db: AsyncSession, svc: Services, claims: AccessClaims) -> SessionList:
    at = now(svc.clock)
    rows = await repository.live_for_user(db, claims.sub, at, _idle_since(svc, at))
    return SessionList(
        items=[
            SessionOut(
                id=row.id,
                created_at=row.created_at,
                # A session is seen when it logs in, refreshes or proves itself again: each
                # writes last_refreshed_at (the idle limit's clock) anyway.
                last_seen_at=row.last_refreshed_at,
                ip=row.ip,
                user_agent=row.user_agent,
                amr=row.amr.split(),
                current=row.id == claims.sid,
            )
            for row in rows
        ]
    )


async def revoke_session(
    db: AsyncSession, svc: Services, client: Client, claims: AccessClaims, session_id: uuid.UUID
) -> None:
    """End one of the caller's live sessions (this one included): its refresh token stops at
    once, its access tokens at our endpoints and introspection (`authenticate`)."""
    at = now(svc.clock)
    idle_since = _idle_since(svc, at)
    if not await repository.revoke_live_owned(
        db, claims.sub, session_id, at, idle_since, "revoked_by_user"
    ):
        raise SessionNotFound()
    audit.record(db, svc, client, "session.revoked", claims.sub, session=str(session_id))


async def new_authentication_event(
    db: AsyncSession, svc: Services, claims: AccessClaims, amr: list[str]
) -> TokenResponse:
    """The same session after a step-up or a reauthentication: `auth_time` is now and `amr`
    lists what this event proved, never a method proven earlier (SPEC §3)."""
    session = await repository.get_live_session(db, claims.sid)
    at = now(svc.clock)
    if session is None or at >= session.expires_at:
        raise InvalidToken()
    session.amr = " ".join(amr)
    session.auth_time = at
    session.last_refreshed_at = at
    db.add(session)
    # The refresh token handed out before now belongs to the earlier event: retire it.
    await repository.retire_unused_tokens(db, session.id, at)
    return await _issue(db, svc, session.id, session.user_id, at, amr, at, session.expires_at)


async def sign_out_elsewhere(
    db: AsyncSession, svc: Services, user_id: uuid.UUID, keep: uuid.UUID | None, reason: str
) -> None:
    """After a password or MFA change: every other session and every pending challenge ends,
    including those of logins still in flight (they were decided on the old credentials
    version); the session `keep` that made the change moves to the new version."""
    version = await accounts_repository.bump_credentials_version(db, user_id)
    if keep is not None:
        await repository.adopt_credentials_version(db, keep, version)
    await repository.revoke_all_for_user(db, user_id, now(svc.clock), reason, keep=keep)
    await challenges.revoke_all(svc, user_id)
