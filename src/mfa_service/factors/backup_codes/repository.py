"""Queries on backup codes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.factors.backup_codes.models import BackupCode


async def unused(db: AsyncSession, user_id: uuid.UUID) -> list[BackupCode]:
    query = select(BackupCode).where(
        BackupCode.user_id == user_id, col(BackupCode.used_at).is_(None)
    )
    return list(await db.exec(query))


async def count_unused(db: AsyncSession, user_id: uuid.UUID) -> int:
    query = (
        select(func.count())
        .select_from(BackupCode)
        .where(BackupCode.user_id == user_id, col(BackupCode.used_at).is_(None))
    )
    return int((await db.exec(query)).one())


async def consume(db: AsyncSession, code_id: uuid.UUID, at: datetime) -> bool:
    """Single use decided by the database: of racing requests one sees the row updated."""
    result = await db.exec(
        update(BackupCode)
        .where(col(BackupCode.id) == code_id, col(BackupCode.used_at).is_(None))
        .values(used_at=at)
    )
    return result.rowcount == 1


async def delete_for_user(db: AsyncSession, user_id: uuid.UUID) -> None:
    await db.exec(delete(BackupCode).where(col(BackupCode.user_id) == user_id))
