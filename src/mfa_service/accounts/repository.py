"""Queries on users."""

from __future__ import annotations

import uuid

from sqlalchemy import update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User


async def get_by_email(db: AsyncSession, email: str) -> User | None:
    return (await db.exec(select(User).where(User.email == email))).first()


async def get(db: AsyncSession, user_id: uuid.UUID) -> User | None:
    return await db.get(User, user_id)


async def bump_credentials_version(db: AsyncSession, user_id: uuid.UUID) -> int:
    """The user's credentials changed: every session decided on the old ones dies. An
    increment in the database, so two changes at once never share a version."""
    result = await db.exec(
        update(User)
        .where(col(User.id) == user_id)
        .values(credentials_version=col(User.credentials_version) + 1)
        .returning(col(User.credentials_version))
        .execution_options(synchronize_session=False)
    )
    version = int(result.scalar_one())
    user = await db.get(User, user_id)
    if user is not None:  # the loaded object follows, as a stored value (nothing to flush)
        set_committed_value(user, "credentials_version", version)
    return version


async def claim_credentials_version(db: AsyncSession, user_id: uuid.UUID, expected: int) -> bool:
    """Move the user's credentials version on from `expected`, only if it is still that: the
    row count decides between concurrent claims (the loser waits for the winner's commit on
    PostgreSQL, then finds the version moved)."""
    result = await db.exec(
        update(User)
        .where(col(User.id) == user_id, col(User.credentials_version) == expected)
        .values(credentials_version=expected + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def replace_password_hash(db: AsyncSession, user_id: uuid.UUID, old: str, new: str) -> None:
    """A rehash with current parameters, unless the password changed meanwhile."""
    await db.exec(
        update(User)
        .where(col(User.id) == user_id, col(User.password_hash) == old)
        .values(password_hash=new)
        .execution_options(synchronize_session=False)
    )
