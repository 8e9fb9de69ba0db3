"""The operator's view of webhook deliveries (`mfa-service webhooks …`): the outbox rows of
kind `webhook`, on a connection."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Row, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from mfa_service.outbox.service import OUTBOX
from mfa_service.webhooks.delivery import KIND


@dataclass(frozen=True)
class Delivery:
    id: uuid.UUID  # the outbox row's, which `retry` takes
    event_type: str
    event_id: str  # the audit event's, the receiver's `webhook-id` without `msg_`
    created_at: datetime
    attempts: int
    state: str  # pending, delivered or failed (given up)
    last_error: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "id": str(self.id),
            "event_type": self.event_type,
            "event_id": self.event_id,
            "created_at": self.created_at.isoformat(),
            "attempts": self.attempts,
            "state": self.state,
            "last_error": self.last_error,
        }


def _delivery(row: Row[tuple[object, ...]]) -> Delivery:
    m = row._mapping
    state = "delivered" if m["delivered_at"] else "failed" if m["dead_at"] else "pending"
    return Delivery(
        m["id"],
        m["payload"]["type"],
        m["payload"]["data"]["id"],
        m["created_at"],
        m["attempts"],
        state,
        m["last_error"],
    )


async def deliveries(conn: AsyncConnection, failed: bool, limit: int) -> list[Delivery]:
    """The newest `limit` deliveries, or only those given up (`failed`)."""
    query = select(OUTBOX).where(OUTBOX.c.kind == KIND)
    if failed:
        query = query.where(OUTBOX.c.dead_at.is_not(None))
    query = query.order_by(OUTBOX.c.created_at.desc(), OUTBOX.c.id).limit(limit)
    return [_delivery(row) for row in await conn.execute(query)]


async def retry(conn: AsyncConnection, ids: Sequence[uuid.UUID] | None, at: datetime) -> int:
    """Make failed deliveries (those of `ids`, or all) due now with a fresh MFA_OUTBOX_MAX_AGE
    of retries; how many. A running instance's worker sends them at its next poll."""
    query = (
        update(OUTBOX)
        .where(OUTBOX.c.kind == KIND, OUTBOX.c.dead_at.is_not(None))
        .values(dead_at=None, next_attempt_at=at, created_at=at, attempts=0, lease_id=None)
    )
    if ids is not None:
        query = query.where(OUTBOX.c.id.in_(list(ids)))
    result = await conn.execute(query)
    return int(result.rowcount)
