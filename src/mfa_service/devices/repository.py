"""Queries on device tokens."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, delete, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.devices.models import DeviceToken


async def find(
    db: AsyncSession, user_id: uuid.UUID, token_hash: str, at: datetime
) -> DeviceToken | None:
    """The user's unexpired device with this token; a token of another user is no device."""
    query = select(DeviceToken).where(
        col(DeviceToken.token_hash) == token_hash,
        col(DeviceToken.user_id) == user_id,
        col(DeviceToken.expires_at) > at,
    )
    # Read afresh even when the row is loaded already: a second look must see a change.
    return (await db.exec(query.execution_options(populate_existing=True))).first()


async def rotate(
    db: AsyncSession,
    device_id: uuid.UUID,
    user_id: uuid.UUID,
    token_hash: str,
    at: datetime,
    remember: tuple[datetime, int] | None,
) -> bool:
    """The device's next token (and, with `remember`, remembered until then on that
    credentials version); False when the device is gone or expired."""
    values: dict[str, object] = {"token_hash": token_hash}
    if remember is not None:
        values |= {"remembered_until": remember[0], "remembered_version": remember[1]}
    result = await db.exec(
        update(DeviceToken)
        .where(
            col(DeviceToken.id) == device_id,
            col(DeviceToken.user_id) == user_id,
            col(DeviceToken.expires_at) > at,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def delete_device(db: AsyncSession, device_id: uuid.UUID) -> None:
    await db.exec(delete(DeviceToken).where(col(DeviceToken.id) == device_id))


async def forget_all(db: AsyncSession, user_id: uuid.UUID) -> int:
    """No device of the user is remembered any more; how many were."""
    result = await db.exec(
        update(DeviceToken)
        .where(col(DeviceToken.user_id) == user_id, col(DeviceToken.remembered_until).is_not(None))
        .values(remembered_until=None, remembered_version=None)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)
