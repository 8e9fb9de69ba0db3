from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from mfa_service.audit import service
from mfa_service.audit.schemas import EventOut, EventPage
from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.errors import (
    InvalidCursor,
    InvalidToken,
    RequestValidationFailed,
    ServiceUnavailable,
    responses,
)
from mfa_service.sessions.dependencies import CurrentClaims

router = APIRouter(tags=["accounts"])


@router.get(
    "/users/me/events",
    response_model=EventPage,
    operation_id="listSecurityEvents",
    summary="The caller's security events, newest first",
    responses=responses(InvalidToken, InvalidCursor, RequestValidationFailed, ServiceUnavailable),
)
@statements_autocommit
async def my_events(
    claims: CurrentClaims,
    db: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Events per page.")] = 20,
    cursor: Annotated[
        str | None,
        Query(max_length=200, description="The `next_cursor` of the previous page."),
    ] = None,
) -> EventPage:
    """Logins, challenges, step-ups, factor changes, refresh-token reuse and the like (`type`),
    with the client's IP and user agent; `at` is ISO 8601 UTC. Page with `next_cursor`
    (opaque; null on the last page)."""
    rows, next_cursor = await service.page(db, claims.sub, limit, cursor)
    items = [
        EventOut(type=r.type, at=r.at, ip=r.ip, user_agent=r.user_agent, detail=r.detail)
        for r in rows
    ]
    return EventPage(items=items, next_cursor=next_cursor)
