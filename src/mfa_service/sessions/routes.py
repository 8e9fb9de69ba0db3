from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep
from mfa_service.errors import (
    InvalidRefreshToken,
    InvalidToken,
    RateLimited,
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
    summary="Rotate a refresh token",
    responses=responses(InvalidRefreshToken, RateLimited, ServiceUnavailable),
)
async def refresh(
    body: RefreshRequest, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse:
    """Each refresh token works once. Presenting a used one ends the whole session."""
    return await service.refresh(db, svc, client, body.refresh_token)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="End the session",
    responses=responses(InvalidToken, ServiceUnavailable),
)
async def logout(
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
    body: LogoutRequest | None = None,
) -> None:
    """The access token is refused from now on and its session's refresh token is revoked."""
    await service.logout(db, svc, client, claims, body.refresh_token if body else None)
