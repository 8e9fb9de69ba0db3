"""Audit events: written in the request's transaction, listed newest first by cursor."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from sqlalchemy import and_, or_
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.audit.models import AuditEvent
from mfa_service.base import new_id
from mfa_service.clock import now
from mfa_service.db import stage
from mfa_service.errors import InvalidCursor
from mfa_service.mail import service as mail
from mfa_service.mail.notices import NOTICES
from mfa_service.net import Client
from mfa_service.observability import metrics
from mfa_service.services import Services
from mfa_service.webhooks import delivery as webhooks

AUDIT_EVENTS = AuditEvent.__table__  # type: ignore[attr-defined]


def record(
    db: AsyncSession,
    svc: Services,
    client: Client,
    type_: str,
    user_id: uuid.UUID | None,
    **detail: str,
) -> None:
    """Written with the request's transaction (staged: see `db.stage`); the domain counters
    of /metrics count it, an event that warrants a security notice (`mail.notices`) enqueues
    its mail, and with webhooks on every event enqueues its delivery, in the same
    transaction."""
    metrics.count_event(type_, detail)
    at = now(svc.clock)
    event = {
        "id": new_id(),
        "user_id": user_id,
        "type": type_,
        "at": at,
        "ip": client.ip,
        "user_agent": client.user_agent,
        "detail": detail,
    }
    stage(db, AUDIT_EVENTS, event)
    if svc.settings.webhook_url is not None:
        webhooks.enqueue_event(db, svc, event)
    if type_ in NOTICES and user_id is not None:
        mail.send_notice(db, svc, client, type_, user_id, at, detail)


def _cursor(event: AuditEvent) -> str:
    return base64.urlsafe_b64encode(f"{event.at.isoformat()}|{event.id}".encode()).decode()


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, _, event_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(at), uuid.UUID(event_id)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise InvalidCursor() from None


async def page(
    db: AsyncSession, user_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[AuditEvent], str | None]:
    query = select(AuditEvent).where(AuditEvent.user_id == user_id)
    if cursor:
        at, event_id = _parse_cursor(cursor)
        query = query.where(
            or_(
                col(AuditEvent.at) < at,
                and_(col(AuditEvent.at) == at, col(AuditEvent.id) < event_id),
            )
        )
    query = query.order_by(col(AuditEvent.at).desc(), col(AuditEvent.id).desc()).limit(limit + 1)
    rows = list(await db.exec(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, _cursor(rows[-1]) if more and rows else None
