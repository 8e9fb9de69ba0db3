from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep
from mfa_service.errors import (
    InsufficientUserAuthentication,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    MfaNotEnabled,
    NothingPending,
    PendingNotFound,
    RateLimited,
    ServiceUnavailable,
    TotpAlreadyEnabled,
    TotpNotEnabled,
    responses,
)
from mfa_service.factors import service
from mfa_service.factors.schemas import (
    BackupCodes,
    DisableRequest,
    FactorProof,
    MfaState,
    PresenceProof,
    TotpCode,
    TotpConfirmed,
    TotpSetup,
)
from mfa_service.factors.totp import otp
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import TokenResponse

router = APIRouter(tags=["mfa"])
NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/mfa",
    response_model=MfaState,
    summary="Second-factor state",
    responses=responses(InvalidToken),
)
async def mfa_state(claims: CurrentClaims, db: SessionDep) -> MfaState:
    return await service.state(db, claims)


@router.post(
    "/mfa/totp/setup",
    response_model=TotpSetup,
    summary="Start TOTP enrolment",
    responses=responses(InvalidToken, InsufficientUserAuthentication, TotpAlreadyEnabled),
)
async def totp_setup(
    claims: CurrentClaims, db: SessionDep, svc: ServicesDep, response: Response
) -> TotpSetup:
    """A new pending secret (any earlier pending one is replaced). Scan the QR code, then
    confirm with a first code. The secret is never shown again once TOTP is active.

    Needs a recent authentication (`auth_time` within `MFA_REAUTH_MAX_AGE`, 300 s): else 401
    `insufficient_user_authentication`; call `POST /auth/reauthenticate` and retry."""
    response.headers.update(NO_STORE)
    return await service.setup_totp(db, svc, claims)


@router.get(
    "/mfa/totp/qr.png",
    summary="The pending secret's QR code (PNG)",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **responses(InvalidToken, PendingNotFound)},
)
async def totp_qr_png(claims: CurrentClaims, db: SessionDep, svc: ServicesDep) -> Response:
    uri = await service.pending_uri(db, svc, claims)
    return Response(otp.qr_png(uri), media_type="image/png", headers=NO_STORE)


@router.get(
    "/mfa/totp/qr.svg",
    summary="The pending secret's QR code (SVG)",
    response_class=Response,
    responses={200: {"content": {"image/svg+xml": {}}}, **responses(InvalidToken, PendingNotFound)},
)
async def totp_qr_svg(claims: CurrentClaims, db: SessionDep, svc: ServicesDep) -> Response:
    uri = await service.pending_uri(db, svc, claims)
    return Response(otp.qr_svg(uri), media_type="image/svg+xml", headers=NO_STORE)


@router.post(
    "/mfa/totp/confirm",
    response_model=TotpConfirmed,
    summary="Activate TOTP with a first code",
    responses=responses(InvalidToken, InsufficientUserAuthentication, NothingPending, InvalidCode),
)
async def totp_confirm(
    body: TotpCode,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    response: Response,
    client: ClientDep,
) -> TotpConfirmed:
    """Returns 10 backup codes, shown this once. Other sessions and pending challenges end."""
    response.headers.update(NO_STORE)
    return await service.confirm_totp(db, svc, client, claims, body.code)


@router.delete(
    "/mfa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Remove TOTP (and the backup codes, if no other factor is left)",
    responses=responses(
        InvalidToken, InvalidCredentials, InvalidCode, MfaNotEnabled, TotpNotEnabled, RateLimited
    ),
)
async def totp_disable(
    body: DisableRequest, claims: CurrentClaims, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> None:
    """Needs the password and a second factor (a current code, a backup code, or a security
    key's assertion for the options of `POST /mfa/step-up/options`). With a security key
    left MFA stays on and the backup codes stay valid."""
    await service.disable_totp(db, svc, client, claims, body)


@router.post(
    "/mfa/backup-codes",
    response_model=BackupCodes,
    summary="Replace the backup codes",
    responses=responses(InvalidToken, InvalidCode, MfaNotEnabled, RateLimited),
)
async def backup_codes_regenerate(
    body: PresenceProof,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    response: Response,
    client: ClientDep,
) -> BackupCodes:
    """A current TOTP code or a security key's assertion (for the options of
    `POST /mfa/step-up/options`) proves presence; every earlier backup code stops working."""
    response.headers.update(NO_STORE)
    return await service.regenerate_backup_codes(db, svc, client, claims, body.proof())


@router.post(
    "/mfa/step-up",
    response_model=TokenResponse,
    summary="Prove a second factor again for a fresh auth_time",
    responses=responses(InvalidToken, InvalidCode, MfaNotEnabled, RateLimited, ServiceUnavailable),
)
async def step_up(
    body: FactorProof, claims: CurrentClaims, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse:
    """For services that demand recent MFA (RFC 9470): same session, new tokens whose
    `auth_time` is now and whose `amr` is `["mfa", <the factor just proven>]`. With a
    security key: first `POST /mfa/step-up/options`, then send `{"webauthn": …}`."""
    return await service.step_up(db, svc, client, claims, body)
