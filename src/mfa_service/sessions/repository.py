"""Queries on sessions and refresh tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.db import autocommit_driver
from mfa_service.sessions.models import RefreshToken, Session

# A session made under an older credentials version than its user's current one is dead,
# whatever else it says: a password or factor change happened after it was decided on.
_CURRENT = col(User.credentials_version) == col(Session.credentials_version)


async def get_live_session(db: AsyncSession, session_id: uuid.UUID) -> Session | None:
    """The session, unless it was revoked or its user's credentials changed since. Its user
    is loaded by the same statement: the route's `db.get(User, …)` then needs no query."""
    query = (
        select(Session, User)
        .join(User, col(User.id) == col(Session.user_id))
        .where(Session.id == session_id, col(Session.revoked_at).is_(None), _CURRENT)
    )
    row = (await db.exec(query)).first()
    if row is None:
        return None
    # The identity map holds objects weakly: kept here for the request, the user stays in it.
    db.info["session_user"] = row[1]
    return row[0]


_USER_COLUMNS = tuple(User.model_fields)
_LIVE_SESSION_SQL = (
    "SELECT s.user_id, s.expires_at, "
    + ", ".join(f"u.{name}" for name in _USER_COLUMNS)
    + " FROM sessions s JOIN users u ON u.id = s.user_id"
    " WHERE s.id = $1 AND s.revoked_at IS NULL AND u.credentials_version = s.credentials_version"
)


async def get_live_session_user(
    db: AsyncSession, session_id: uuid.UUID
) -> tuple[uuid.UUID, datetime] | None:
    """(user id, end) of the session, unless it was revoked or its user's credentials
    changed since; the user, read by the same statement, is kept for the request
    (`session_user`). Every authenticated request asks this: on a read-only route it is one
    statement on the raw driver, no ORM (STYLE §18; the user is then a detached object the
    route only reads)."""
    if (driver := await autocommit_driver(db)) is None:
        session = await get_live_session(db, session_id)
        return None if session is None else (session.user_id, session.expires_at)
    row = await driver.fetchrow(_LIVE_SESSION_SQL, session_id)
    if row is None:
        return None
    db.info["session_user"] = User(**{name: row[name] for name in _USER_COLUMNS})
    return row["user_id"], row["expires_at"]


def session_user(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user `get_live_session_user` read for this request, if it was `user_id`."""
    user: User | None = db.info.get("session_user")
    return user if user is not None and user.id == user_id else None


async def find_refresh_token(
    db: AsyncSession, token_hash: str
) -> tuple[RefreshToken, Session, bool] | None:
    """The token, its session, and whether the session was made under the user's current
    credentials."""
    row = (
        await db.exec(
            select(RefreshToken, Session, _CURRENT)
            .join(Session, col(Session.id) == col(RefreshToken.session_id))
            .join(User, col(User.id) == col(Session.user_id))
            .where(RefreshToken.token_hash == token_hash)
        )
    ).first()
    return None if row is None else (row[0], row[1], bool(row[2]))


async def mark_used(db: AsyncSession, token_id: uuid.UUID, at: datetime) -> bool:
    """Single use decided by the database: only one caller sees a row updated."""
    result = await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.id) == token_id, col(RefreshToken.used_at).is_(None))
        .values(used_at=at)
    )
    return result.rowcount == 1


async def revoke(db: AsyncSession, session_id: uuid.UUID, at: datetime, reason: str) -> None:
    await db.exec(
        update(Session)
        .where(col(Session.id) == session_id, col(Session.revoked_at).is_(None))
        .values(revoked_at=at, revoked_reason=reason)
    )


async def revoke_all_for_user(
    db: AsyncSession,
    user_id: uuid.UUID,
    at: datetime,
    reason: str,
    *,
    keep: uuid.UUID | None = None,
) -> None:
    query = update(Session).where(
        col(Session.user_id) == user_id, col(Session.revoked_at).is_(None)
    )
    if keep is not None:
        query = query.where(col(Session.id) != keep)
    await db.exec(query.values(revoked_at=at, revoked_reason=reason))


async def adopt_credentials_version(db: AsyncSession, session_id: uuid.UUID, version: int) -> None:
    """The session that made a credentials change stays signed in under the new version."""
    await db.exec(
        update(Session).where(col(Session.id) == session_id).values(credentials_version=version)
    )


async def retire_unused_tokens(db: AsyncSession, session_id: uuid.UUID, at: datetime) -> None:
    await db.exec(
        update(RefreshToken)
        .where(col(RefreshToken.session_id) == session_id, col(RefreshToken.used_at).is_(None))
        .values(used_at=at)
    )
