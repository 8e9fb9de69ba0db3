"""Queries on TOTP credentials."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.factors.totp.models import TotpCredential


async def get(db: AsyncSession, user_id: uuid.UUID) -> TotpCredential | None:
    query = select(TotpCredential).where(TotpCredential.user_id == user_id)
    return (await db.exec(query)).first()


async def consume_step(db: AsyncSession, credential_id: uuid.UUID, step: int) -> bool:
    """Move `last_used_step` forward; only one of two racing requests sees a row updated."""
    result = await db.exec(
        update(TotpCredential)
        .where(
            col(TotpCredential.id) == credential_id,
            col(TotpCredential.confirmed_at).is_not(None),
            or_(
                col(TotpCredential.last_used_step).is_(None),
                col(TotpCredential.last_used_step) < step,
            ),
        )
        .values(last_used_step=step)
    )
    return result.rowcount == 1


async def delete_for_user(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.exec(delete(TotpCredential).where(col(TotpCredential.user_id) == user_id))
