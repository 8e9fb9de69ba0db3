"""Queries on sessions and refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.base import new_id
from mfa_service.db import atomic, autocommit_driver
from mfa_service.sessions.models import RefreshToken, Session

# A session made under an older credentials version than its user's current one is dead,
# whatever else it says: a password or factor change happened after it was decided on. So is
# every session of a disabled user (`mfa-service users disable`, which revokes them as well).
_CURRENT = and_(
    col(User.credentials_version) == col(Session.credentials_version),
    col(User.disabled_at).is_(None),
)


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
    " AND u.disabled_at IS NULL"
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


def _live_at(at: datetime, idle_since: datetime) -> tuple[Any, ...]:
    """What makes a session live at `at`: the conditions refresh checks too."""
    return (
        col(Session.revoked_at).is_(None),
        _CURRENT,
        col(Session.expires_at) > at,
        col(Session.last_refreshed_at) > idle_since,
    )


async def live_for_user(
    db: AsyncSession, user_id: uuid.UUID, at: datetime, idle_since: datetime
) -> list[Session]:
    """The user's live sessions, newest first."""
    query = (
        select(Session)
        .join(User, col(User.id) == col(Session.user_id))
        .where(col(Session.user_id) == user_id, *_live_at(at, idle_since))
        .order_by(col(Session.created_at).desc(), col(Session.id).desc())
    )
    return list(await db.exec(query))


async def revoke_live_owned(
    db: AsyncSession,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    at: datetime,
    idle_since: datetime,
    reason: str,
) -> bool:
    """End one of the user's live sessions; False when there is no such live session of
    theirs (unknown, someone else's, or already over). One conditional UPDATE: the row count
    decides, so two revocations of one session never both report it."""
    live = (
        select(Session.id)
        .join(User, col(User.id) == col(Session.user_id))
        .where(col(Session.id) == session_id, col(Session.user_id) == user_id)
        .where(*_live_at(at, idle_since))
    )
    result = await db.exec(
        update(Session)
        .where(col(Session.id).in_(live.scalar_subquery()), col(Session.revoked_at).is_(None))
        .values(revoked_at=at, revoked_reason=reason)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


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


@dataclass(frozen=True)
class Rotation:
    """What presenting a refresh token did to the session it belongs to."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    auth_time: datetime
    amr: str
    expires_at: datetime
    # Used before, or by a concurrent request: whoever holds the family may be a thief.
    reused: bool
    # Marked used, the session touched and the next token stored: the session lives on.
    rotated: bool


# One statement, no transaction (STYLE §18): find the token with its session, and only if it
# is unused and the session lives (not revoked, current credentials, not past its end or its
# idle limit) mark it used, touch the session and store the next token. Single use holds
# under races: READ COMMITTED rechecks `used_at IS NULL` on the row a concurrent rotation
# committed, so the loser marks nothing and reads as a reuse.
_ROTATE_SQL = """
WITH found AS (
    SELECT t.id AS token_id, t.used_at IS NOT NULL AS used, s.id AS session_id, s.user_id,
           s.auth_time, s.amr, s.expires_at,
           s.revoked_at IS NULL AND u.credentials_version = s.credentials_version
               AND u.disabled_at IS NULL AND s.expires_at > $2 AND s.last_refreshed_at > $3 AS live
    FROM refresh_tokens t
    JOIN sessions s ON s.id = t.session_id
    JOIN users u ON u.id = s.user_id
    WHERE t.token_hash = $1
), marked AS (
    UPDATE refresh_tokens t SET used_at = $2 FROM found
    WHERE t.id = found.token_id AND t.used_at IS NULL AND found.live
    RETURNING t.session_id
), touched AS (
    UPDATE sessions s SET last_refreshed_at = $2 FROM marked
    WHERE s.id = marked.session_id
    RETURNING s.id
), issued AS (
    INSERT INTO refresh_tokens (id, session_id, token_hash, created_at)
    SELECT $4, id, $5, $2 FROM touched
    RETURNING id
)
SELECT found.*, EXISTS (SELECT 1 FROM issued) AS rotated FROM found
"""


async def rotate_refresh_token(
    db: AsyncSession,
    token_hash: str,
    at: datetime,
    idle_since: datetime,
    next_hash: str,
) -> Rotation | None:
    """Spend the token whose hash is `token_hash` and store the next one (`next_hash`) in its
    place, if its session lives at `at` and was refreshed after `idle_since`; None for an
    unknown token."""
    next_id = new_id()
    if (driver := await autocommit_driver(db)) is not None:
        row = await driver.fetchrow(_ROTATE_SQL, token_hash, at, idle_since, next_id, next_hash)
        if row is None:
            return None
        reused = row["used"] or (row["live"] and not row["rotated"])
        return Rotation(
            row["session_id"],
            row["user_id"],
            row["auth_time"],
            row["amr"],
            row["expires_at"],
            reused=reused,
            rotated=row["rotated"],
        )
    async with atomic(db):
        found = await find_refresh_token(db, token_hash)
        if found is None:
            return None
        token, session, current = found
        live = (
            session.revoked_at is None
            and current
            and session.expires_at > at
            and session.last_refreshed_at > idle_since
        )
        reused = token.used_at is not None or (live and not await mark_used(db, token.id, at))
        rotated = live and not reused
        if rotated:
            session.last_refreshed_at = at
            db.add(session)
            db.add(
                RefreshToken(id=next_id, session_id=session.id, token_hash=next_hash, created_at=at)
            )
    return Rotation(
        session.id,
        session.user_id,
        session.auth_time,
        session.amr,
        session.expires_at,
        reused=reused,
        rotated=rotated,
    )
