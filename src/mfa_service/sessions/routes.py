from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.errors import (
    InvalidRefreshToken,
    InvalidToken,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions import service
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import LogoutRequest, RefreshRequest, TokenResponse

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
    """The access token is refused from now on and its session's refresh token is revoked
    (the body and its `refresh_token` are optional)."""
    await service.logout(db, svc, client, claims, body.refresh_token if body else None)
