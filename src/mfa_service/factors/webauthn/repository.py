"""Queries on WebAuthn credentials. Single use and the counter are decided in one conditional
UPDATE each (STYLE §7): of two racing requests, one sees its row updated."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts.models import User
from mfa_service.factors.webauthn.models import WebAuthnCredential as Credential


async def for_user(db: AsyncSession, user_id: uuid.UUID) -> list[Credential]:
    query = (
        select(Credential)
        .where(Credential.user_id == user_id)
        .order_by(col(Credential.created_at), col(Credential.id))
    )
    return list(await db.exec(query))


async def count(db: AsyncSession, user_id: uuid.UUID, *, usable: bool = False) -> int:
    """The user's credentials; `usable`: only those not suspected of being cloned."""
    query = select(func.count()).select_from(Credential).where(Credential.user_id == user_id)
    if usable:
        query = query.where(col(Credential.clone_suspected_at).is_(None))
    return int((await db.exec(query)).one())


async def owned(db: AsyncSession, user_id: uuid.UUID, id_: uuid.UUID) -> Credential | None:
    query = select(Credential).where(Credential.id == id_, Credential.user_id == user_id)
    return (await db.exec(query)).first()


async def by_credential_id(
    db: AsyncSession, credential_id: bytes, user_id: uuid.UUID | None = None
) -> tuple[Credential, int] | None:
    """The credential with that authenticator id (of that user, if given) and its user's
    credentials version, read together."""
    query = (
        select(Credential, User.credentials_version)
        .join(User, col(User.id) == col(Credential.user_id))
        .where(Credential.credential_id == credential_id)
    )
    if user_id is not None:
        query = query.where(Credential.user_id == user_id)
    row = (await db.exec(query)).first()
    return None if row is None else (row[0], int(row[1]))


async def record_use(
    db: AsyncSession, id_: uuid.UUID, sign_count: int, backed_up: bool, at: datetime
) -> bool:
    """Accept a use whose counter moved forward (or stayed 0, a synced passkey) on a
    credential not suspected of being cloned; False otherwise."""
    counter = col(Credential.sign_count)
    moved = counter < sign_count if sign_count else counter == 0
    result = await db.exec(
        update(Credential)
        .where(
            col(Credential.id) == id_,
            col(Credential.clone_suspected_at).is_(None),
            moved,
        )
        .values(sign_count=sign_count, backed_up=backed_up, last_used_at=at)
    )
    return result.rowcount == 1


async def mark_cloned(db: AsyncSession, id_: uuid.UUID, at: datetime) -> bool:
    """True the first time: the caller records it."""
    result = await db.exec(
        update(Credential)
        .where(col(Credential.id) == id_, col(Credential.clone_suspected_at).is_(None))
        .values(clone_suspected_at=at)
    )
    return result.rowcount == 1


async def remove(db: AsyncSession, user_id: uuid.UUID, id_: uuid.UUID) -> bool:
    result = await db.exec(
        delete(Credential).where(col(Credential.id) == id_, col(Credential.user_id) == user_id)
    )
    return result.rowcount == 1
