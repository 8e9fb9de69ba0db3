"""Enqueueing: a row written in the caller's transaction, and the worker woken once it
commits. The one function every producer uses (mail now, webhooks next)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.base import new_id
from mfa_service.clock import now
from mfa_service.db import after_commit, stage
from mfa_service.outbox.models import OutboxMessage

if TYPE_CHECKING:
    from mfa_service.services import Services

OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


def enqueue(db: AsyncSession, svc: Services, kind: str, payload: dict[str, Any]) -> None:
    """Deliver `payload` with the handler registered for `kind`, once this transaction has
    committed (never if it rolls back). Staged like audit events (`db.stage`): it is written
    with them, in the same transaction. Nothing is sent from the request itself."""
    at = now(svc.clock)
    stage(
        db,
        OUTBOX,
        {
            "id": new_id(),
            "kind": kind,
            "payload": payload,
            "created_at": at,
            "attempts": 0,
            "next_attempt_at": at,
        },
    )
    after_commit(db, svc.outbox.wake)
