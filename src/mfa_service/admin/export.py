"""`mfa-service audit export`: audit events as JSON lines, oldest first, read in pages by
(at, id) so an export of millions of rows holds neither memory nor a long transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from mfa_service.accounts.models import User
from mfa_service.audit.models import AuditEvent

PAGE = 1000
EVENTS: Any = AuditEvent.__table__  # type: ignore[attr-defined]
USERS: Any = User.__table__  # type: ignore[attr-defined]


async def events(
    engine: AsyncEngine,
    since: datetime | None = None,
    user_id: uuid.UUID | None = None,
    page: int = PAGE,
) -> AsyncIterator[dict[str, Any]]:
    e = EVENTS.c
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        query = select(
            e.id, e.at, e.type, e.user_id, USERS.c.email, e.ip, e.user_agent, e.detail
        ).select_from(EVENTS.outerjoin(USERS, USERS.c.id == e.user_id))
        if since is not None:
            query = query.where(e.at >= since)
        if user_id is not None:
            query = query.where(e.user_id == user_id)
        if after is not None:
            query = query.where(or_(e.at > after[0], and_(e.at == after[0], e.id > after[1])))
        query = query.order_by(e.at, e.id).limit(page)
        async with engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        for row in rows:
            yield {
                "id": str(row.id),
                "at": row.at.isoformat(),
                "type": row.type,
                "user_id": str(row.user_id) if row.user_id else None,
                "email": row.email,
                "ip": row.ip,
                "user_agent": row.user_agent,
                "detail": row.detail,
            }
        if len(rows) < page:
            return
        after = (rows[-1].at, rows[-1].id)


def line(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)
