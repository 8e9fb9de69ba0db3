"""Queries on account tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.recovery.models import AccountToken


async def lock_user(db: AsyncSession, user_id: uuid.UUID) -> None:
    """Hold the user's row until the transaction ends (PostgreSQL; SQLite's transactions
    take the database's write lock anyway)."""
    await db.exec(select(User.id).where(User.id == user_id).with_for_update())


async def void_all(db: AsyncSession, user_id: uuid.UUID, purpose: str, at: datetime) -> None:
    await db.exec(
        update(AccountToken)
        .where(
            col(AccountToken.user_id) == user_id,
            col(AccountToken.purpose) == purpose,
            col(AccountToken.used_at).is_(None),
        )
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )


async def find_valid(
    db: AsyncSession, purpose: str, token_hash: str, at: datetime
) -> AccountToken | None:
    return (
        await db.exec(
            select(AccountToken).where(
                AccountToken.token_hash == token_hash,
                AccountToken.purpose == purpose,
                col(AccountToken.used_at).is_(None),
                col(AccountToken.expires_at) > at,
            )
        )
    ).first()


async def consume(db: AsyncSession, token_id: uuid.UUID, at: datetime) -> bool:
    """Use the token up, if it still can be: the row count decides between racing uses."""
    result = await db.exec(
        update(AccountToken)
        .where(
            col(AccountToken.id) == token_id,
            col(AccountToken.used_at).is_(None),
            col(AccountToken.expires_at) > at,
        )
        .values(used_at=at)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1
