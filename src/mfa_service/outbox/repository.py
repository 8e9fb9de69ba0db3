"""The worker's statements on the outbox, on a connection (no ORM session: STYLE §18)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mfa_service.outbox.service import OUTBOX


async def claim(
    conn: AsyncConnection,
    kinds: Sequence[str],
    at: datetime,
    lease_until: datetime,
    lease_id: uuid.UUID,
    limit: int,
) -> list[Any]:
    """Lease up to `limit` due rows of `kinds`, oldest first: their `next_attempt_at` moves
    to the end of the lease (a worker that dies leaves them due again) and `attempts` counts
    this one. Rows another instance is claiming right now are skipped (PostgreSQL's SKIP
    LOCKED; SQLite, one process, takes its write lock for the whole statement)."""
    due = (
        select(OUTBOX.c.id)
        .where(
            OUTBOX.c.delivered_at.is_(None),
            OUTBOX.c.dead_at.is_(None),
            OUTBOX.c.next_attempt_at <= at,
            OUTBOX.c.kind.in_(kinds),
        )
        .order_by(OUTBOX.c.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id.in_(due.scalar_subquery()))
        .values(next_attempt_at=lease_until, lease_id=lease_id, attempts=OUTBOX.c.attempts + 1)
        .returning(
            OUTBOX.c.id, OUTBOX.c.kind, OUTBOX.c.payload, OUTBOX.c.created_at, OUTBOX.c.attempts
        )
    )
    return list(result.all())


async def delivered(
    conn: AsyncConnection, row_id: uuid.UUID, lease_id: uuid.UUID, at: datetime
) -> None:
    await conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == row_id, OUTBOX.c.lease_id == lease_id)
        .values(delivered_at=at, last_error=None)
    )


async def failed(
    conn: AsyncConnection,
    row_id: uuid.UUID,
    lease_id: uuid.UUID,
    error: str,
    next_attempt_at: datetime,
    dead_at: datetime | None,
) -> None:
    await conn.execute(
        update(OUTBOX)
        .where(OUTBOX.c.id == row_id, OUTBOX.c.lease_id == lease_id)
        .values(next_attempt_at=next_attempt_at, dead_at=dead_at, last_error=error[:300])
    )
