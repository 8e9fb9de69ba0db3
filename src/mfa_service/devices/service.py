"""Device tokens: recognise one at login, issue or rotate one after a full login, remember
or forget devices."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.base import new_id
from mfa_service.clock import now
from mfa_service.db import stage
from mfa_service.devices import repository
from mfa_service.devices.models import DeviceToken
from mfa_service.services import Services

DEVICE_TOKENS = DeviceToken.__table__  # type: ignore[attr-defined]


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def recognise(
    db: AsyncSession, svc: Services, user: User | None, token: str | None
) -> DeviceToken | None:
    """The user's device this token names; None for no token, an unknown, expired or spent
    one, or one of another account. Looked up by hash: nothing compares the secret itself."""
    if user is None or not token:
        return None
    return await repository.find(db, user.id, hash_token(token), now(svc.clock))


def is_remembered(svc: Services, device: DeviceToken, user: User) -> bool:
    """Remembered, not past its time, and no password or MFA change since."""
    until = device.remembered_until
    return (
        svc.settings.remember_device_days > 0
        and until is not None
        and until > now(svc.clock)
        and device.remembered_version == user.credentials_version
    )


async def issue(
    db: AsyncSession,
    svc: Services,
    user_id: uuid.UUID,
    device_id: uuid.UUID | None,
    *,
    remember_version: int | None = None,
) -> str:
    """The token a full login hands out: the device's next one (its old token stops
    working), or a new device's. With `remember_version`, the device is remembered on that
    credentials version for MFA_REMEMBER_DEVICE_DAYS."""
    token = secrets.token_urlsafe(32)
    at = now(svc.clock)
    days = svc.settings.remember_device_days
    remember = None
    if remember_version is not None and days > 0:
        remember = (at + timedelta(days=days), remember_version)
    if device_id is not None and await repository.rotate(
        db, device_id, user_id, hash_token(token), at, remember
    ):
        return token
    # A new device: written with the session, in the same round trip (`db.stage`).
    stage(
        db,
        DEVICE_TOKENS,
        {
            "id": new_id(),
            "user_id": user_id,
            "token_hash": hash_token(token),
            "created_at": at,
            "expires_at": at + timedelta(days=svc.settings.device_token_days),
            "remembered_until": remember[0] if remember else None,
            "remembered_version": remember[1] if remember else None,
        },
    )
    return token


async def spend(db: AsyncSession, device: DeviceToken) -> None:
    """Too many wrong passwords with it: the token no longer exempts anyone from the limits."""
    await repository.delete_device(db, device.id)


async def forget_all(db: AsyncSession, user_id: uuid.UUID) -> int:
    return await repository.forget_all(db, user_id)
