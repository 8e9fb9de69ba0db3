from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.errors import (
    InvalidRefreshToken,
    InvalidToken,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    SessionNotFound,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions import service
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import (
    LogoutRequest,
    RefreshRequest,
    SessionList,
    TokenResponse,
)

router = APIRouter(tags=["sessions"])


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    operation_id="refresh",
    summary="Rotate a refresh token",
    responses=responses(
        InvalidRefreshToken, RequestValidationFailed, RateLimited, ServiceUnavailable
    ),
)
@statements_autocommit
async def refresh(
    body: RefreshRequest, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse:
    """A new access token and a new refresh token for the same session (same `auth_time` and
    `amr`). Each refresh token works once: presenting a used one ends the whole session. A
    session ends `MFA_SESSION_MAX_AGE` (12 h) after its login and after
    `MFA_SESSION_IDLE_TIMEOUT` (30 min) without a refresh. Invalid refresh tokens are counted
    per client IP (429 beyond the limit)."""
    return await service.refresh(db, svc, client, body.refresh_token)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="logout",
    summary="End the session",
    responses=responses(InvalidToken, RequestValidationFailed, ServiceUnavailable),
)
async def logout(
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
    body: LogoutRequest | None = None,
) -> None:
    """With `scope` `local` (the default) the access token is refused from now on and its
    session's refresh token is revoked (and the session of `refresh_token`, if it is the
    caller's); `others` ends every other session of the user and keeps this one; `global`
    ends them all. The body is optional."""
    body = body or LogoutRequest()
    await service.logout(db, svc, client, claims, body.refresh_token, body.scope)


@router.get(
    "/users/me/sessions",
    response_model=SessionList,
    operation_id="listSessions",
    summary="Where the user is signed in",
    responses=responses(InvalidToken, ServiceUnavailable),
)
@statements_autocommit
async def list_sessions(claims: CurrentClaims, db: SessionDep, svc: ServicesDep) -> SessionList:
    """The user's live sessions (not revoked, not past their end or idle limit), newest
    first; `current` marks the one this access token belongs to."""
    return await service.list_sessions(db, svc, claims)


@router.delete(
    "/users/me/sessions/{session_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="revokeSession",
    summary="End one of the user's sessions",
    responses=responses(InvalidToken, SessionNotFound, RequestValidationFailed, ServiceUnavailable),
)
async def revoke_session(
    session_id: uuid.UUID,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> None:
    """Its refresh token stops working at once, and its access tokens at this service's
    endpoints and introspection (services that verify offline see them until they expire,
    at most 15 minutes). 404 for an id that is not one of the caller's live sessions."""
    await service.revoke_session(db, svc, client, claims, session_id)
