"""Queries on TOTP credentials.

The two a challenge runs (`get_confirmed`, `consume_step`) are the hot path (see bench/): on
the raw asyncpg connection of an autocommit session (the challenge route on PostgreSQL), else
SQLAlchemy Core on the request's connection — no identity map, no unit of work either way.
The SQL text and the Core statement say the same; tests run both (the challenge on
PostgreSQL; step-up and the password change on PostgreSQL; everything on SQLite).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import BigInteger, delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.db import autocommit_driver
from mfa_service.factors.totp.models import TotpCredential

TOTP = TotpCredential.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ConfirmedTotp:
    id: uuid.UUID
    user_id: uuid.UUID
    secret: bytes
    data_key_id: str
    last_used_step: int | None


async def get(db: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    query = select(TotpCredential).where(TotpCredential.user_id == user_id)
    return (await db.exec(query)).first()


# Built once: a statement object reused keeps its compiled form's cache key.
_GET_CONFIRMED = sa.select(
    TOTP.c.id, TOTP.c.user_id, TOTP.c.secret, TOTP.c.data_key_id, TOTP.c.last_used_step
).where(TOTP.c.user_id == sa.bindparam("user_id"), TOTP.c.confirmed_at.is_not(None))
_STEP = sa.bindparam("step", type_=BigInteger)
_CONSUME_STEP = (
    update(TOTP)
    .where(
        TOTP.c.id == sa.bindparam("credential_id"),
        TOTP.c.confirmed_at.is_not(None),
        or_(TOTP.c.last_used_step.is_(None), TOTP.c.last_used_step < _STEP),
    )
    .values(last_used_step=_STEP)
)


_GET_CONFIRMED_SQL = (
    "SELECT id, user_id, secret, data_key_id, last_used_step FROM totp_credentials"
    " WHERE user_id = $1 AND confirmed_at IS NOT NULL"
)
_CONSUME_STEP_SQL = (
    "UPDATE totp_credentials SET last_used_step = $2 WHERE id = $1"
    " AND confirmed_at IS NOT NULL AND (last_used_step IS NULL OR last_used_step < $2)"
)


async def get_confirmed(db: AsyncSession, user_id: uuid.UUID) -> ConfirmedTotp | None:
    if (driver := await autocommit_driver(db)) is not None:
        found = await driver.fetchrow(_GET_CONFIRMED_SQL, user_id)
        return None if found is None else ConfirmedTotp(*found)
    conn = await db.connection()
    row = (await conn.execute(_GET_CONFIRMED, {"user_id": user_id})).first()
    return None if row is None else ConfirmedTotp(*row)


async def consume_step(db: AsyncSession, credential_id: uuid.UUID, step: int) -> bool:
    """Move `last_used_step` forward; only one of two racing requests sees a row updated."""
    if (driver := await autocommit_driver(db)) is not None:
        status: str = await driver.execute(_CONSUME_STEP_SQL, credential_id, step)
        return status == "UPDATE 1"
    conn = await db.connection()
    result = await conn.execute(_CONSUME_STEP, {"credential_id": credential_id, "step": step})
    return result.rowcount == 1


async def delete_for_user(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.exec(delete(TotpCredential).where(col(TotpCredential.user_id) == user_id))


async def confirm(db: AsyncSession, credential_id: uuid.UUID, at: datetime, step: int) -> bool:
    """Confirm the pending credential; False if it was confirmed (or replaced) meanwhile."""
    result = await db.exec(
        update(TotpCredential)
        .where(col(TotpCredential.id) == credential_id, col(TotpCredential.confirmed_at).is_(None))
        .values(confirmed_at=at, last_used_step=step)
    )
    return result.rowcount == 1
