from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep
from mfa_service.devices import management
from mfa_service.errors import (
    InsufficientUserAuthentication,
    InvalidToken,
    ServiceUnavailable,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims

router = APIRouter(tags=["sessions"])


@router.delete(
    "/users/me/devices",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="forgetDevices",
    summary="Forget every remembered device",
    responses=responses(InvalidToken, InsufficientUserAuthentication, ServiceUnavailable),
)
async def forget_devices(
    claims: CurrentClaims, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> None:
    """No device skips the challenge any more (those remembered with `remember_device` at
    `POST /mfa/challenge`); device tokens still exempt their logins from the password limits.
    Needs a recent authentication with a second factor (`auth_time` within
    `MFA_REAUTH_MAX_AGE`; a login that skipped the challenge does not count): else 401
    `insufficient_user_authentication`; prove a factor at `POST /mfa/step-up` and retry."""
    await management.forget_devices(db, svc, client, claims)
