"""`mfa-service db prune`: rows nothing can use any more, deleted in small batches while the
service runs.

A batch is one short transaction (`DELETE … WHERE id IN (SELECT id … LIMIT n)`), so no
request waits long behind it: on PostgreSQL the rows it locks are dead already, on SQLite the
write lock is held for one batch at a time. Nothing deleted here can still answer a request:

- sessions past their end, or idle past the idle limit plus an access token's lifetime (no
  access token of theirs is still valid), or revoked that long ago; their refresh tokens go
  with them (the foreign key cascades, and we delete them first anyway);
- device tokens past their expiry;
- reset and verification link tokens used, voided or expired;
- audit events older than MFA_AUDIT_RETENTION_DAYS;
- outbox rows (mail, webhooks) delivered or given up more than MFA_OUTBOX_RETENTION_DAYS ago
  (a given-up row is what `webhooks retry` needs until then).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mfa_service.audit.models import AuditEvent
from mfa_service.config import Settings
from mfa_service.devices.models import DeviceToken
from mfa_service.outbox.models import OutboxMessage
from mfa_service.recovery.models import AccountToken
from mfa_service.sessions.models import RefreshToken, Session

BATCH = 1000

SESSIONS: Any = Session.__table__  # type: ignore[attr-defined]
REFRESH_TOKENS: Any = RefreshToken.__table__  # type: ignore[attr-defined]
DEVICE_TOKENS: Any = DeviceToken.__table__  # type: ignore[attr-defined]
AUDIT_EVENTS: Any = AuditEvent.__table__  # type: ignore[attr-defined]
ACCOUNT_TOKENS: Any = AccountToken.__table__  # type: ignore[attr-defined]
OUTBOX: Any = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass
class Pruned:
    sessions: int = 0
    refresh_tokens: int = 0
    device_tokens: int = 0
    account_tokens: int = 0
    audit_events: int = 0
    outbox: int = 0


async def _delete_batches(engine: AsyncEngine, table: Any, ids: Any, batch: int) -> int:
    """Delete the rows of `table` whose id `ids` (a SELECT of ids) finds, `batch` at a time,
    each batch its own transaction."""
    total = 0
    while True:
        async with engine.begin() as conn:
            result = await conn.execute(
                delete(table).where(table.c.id.in_(ids.limit(batch).scalar_subquery()))
            )
        total += int(result.rowcount)
        if result.rowcount < batch:
            return total


async def prune(
    engine: AsyncEngine, settings: Settings, at: datetime, batch: int = BATCH
) -> Pruned:
    grace = timedelta(seconds=settings.access_token_ttl)
    s = SESSIONS.c
    dead_sessions = select(s.id).where(
        or_(
            s.expires_at <= at,
            s.last_refreshed_at <= at - timedelta(seconds=settings.session_idle_timeout) - grace,
            s.revoked_at <= at - grace,
        )
    )
    out = Pruned()
    # Refresh tokens first, so a batch of sessions never cascades into an unbounded delete.
    out.refresh_tokens = await _delete_batches(
        engine,
        REFRESH_TOKENS,
        select(REFRESH_TOKENS.c.id).where(
            REFRESH_TOKENS.c.session_id.in_(dead_sessions.scalar_subquery())
        ),
        batch,
    )
    out.sessions = await _delete_batches(engine, SESSIONS, dead_sessions, batch)
    expired_devices = select(DEVICE_TOKENS.c.id).where(DEVICE_TOKENS.c.expires_at <= at)
    out.device_tokens = await _delete_batches(engine, DEVICE_TOKENS, expired_devices, batch)
    t = ACCOUNT_TOKENS.c
    spent_links = select(t.id).where(or_(t.used_at.is_not(None), t.expires_at <= at))
    out.account_tokens = await _delete_batches(engine, ACCOUNT_TOKENS, spent_links, batch)
    retention = timedelta(days=settings.audit_retention_days)
    out.audit_events = await _delete_batches(
        engine,
        AUDIT_EVENTS,
        select(AUDIT_EVENTS.c.id).where(AUDIT_EVENTS.c.at < at - retention),
        batch,
    )
    o = OUTBOX.c
    kept_since = at - timedelta(days=settings.outbox_retention_days)
    done = select(o.id).where(or_(o.delivered_at < kept_since, o.dead_at < kept_since))
    out.outbox = await _delete_batches(engine, OUTBOX, done, batch)
    return out
