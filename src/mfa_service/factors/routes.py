from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.enrollment.dependencies import EnrollingClaims
from mfa_service.errors import (
    InsufficientUserAuthentication,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    MfaNotEnabled,
    NothingPending,
    Overloaded,
    PendingNotFound,
    RateLimited,
    RequestValidationFailed,
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
    TotpEnrolled,
    TotpSetup,
)
from mfa_service.factors.totp import otp
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import TokenResponse

router = APIRouter(tags=["mfa"])
NO_STORE = {"Cache-Control": "no-store"}
# A QR code of the pending secret: the image itself.
PNG = {"content": {"image/png": {"schema": {"type": "string", "format": "binary"}}}}
SVG = {"content": {"image/svg+xml": {"schema": {"type": "string"}}}}


@router.get(
    "/mfa",
    response_model=MfaState,
    operation_id="getMfaState",
    summary="Second-factor state",
    responses=responses(InvalidToken, ServiceUnavailable),
)
@statements_autocommit
async def mfa_state(claims: CurrentClaims, db: SessionDep) -> MfaState:
    """Whether MFA is on, the TOTP enrolment (active, or pending confirmation), how many
    backup codes are left (0 until a second factor is enrolled) and how many security keys
    and passkeys are registered."""
    return await service.state(db, claims)


@router.post(
    "/mfa/totp/setup",
    response_model=TotpSetup,
    operation_id="setupTotp",
    summary="Start TOTP enrolment",
    responses=responses(
        InvalidToken, InsufficientUserAuthentication, TotpAlreadyEnabled, ServiceUnavailable
    ),
)
async def totp_setup(
    claims: EnrollingClaims, db: SessionDep, svc: ServicesDep, response: Response
) -> TotpSetup:
    """A new pending secret (any earlier pending one is replaced). Scan the QR code, then
    confirm with a first code. The secret is never shown again once TOTP is active.

    Needs a recent authentication (`auth_time` within `MFA_REAUTH_MAX_AGE`, 300 s): else 401
    `insufficient_user_authentication`; call `POST /auth/reauthenticate` and retry.

    Takes an enrollment token (`MFA_REQUIRE_MFA`) instead of an access token too, as do the
    QR code routes and the confirmation."""
    response.headers.update(NO_STORE)
    return await service.setup_totp(db, svc, claims)


@router.get(
    "/mfa/totp/qr.png",
    operation_id="getTotpQrPng",
    summary="The pending secret's QR code (PNG)",
    response_class=Response,
    responses={200: PNG, **responses(InvalidToken, PendingNotFound, ServiceUnavailable)},
)
async def totp_qr_png(claims: EnrollingClaims, db: SessionDep, svc: ServicesDep) -> Response:
    """The otpauth URI of the pending TOTP secret (from `POST /mfa/totp/setup`) as a PNG
    image, for the authenticator app to scan. 404 when nothing is pending (never once TOTP is
    active)."""
    uri = await service.pending_uri(db, svc, claims)
    return Response(otp.qr_png(uri), media_type="image/png", headers=NO_STORE)


@router.get(
    "/mfa/totp/qr.svg",
    operation_id="getTotpQrSvg",
    summary="The pending secret's QR code (SVG)",
    response_class=Response,
    responses={200: SVG, **responses(InvalidToken, PendingNotFound, ServiceUnavailable)},
)
async def totp_qr_svg(claims: EnrollingClaims, db: SessionDep, svc: ServicesDep) -> Response:
    """As `GET /mfa/totp/qr.png`, as an SVG image."""
    uri = await service.pending_uri(db, svc, claims)
    return Response(otp.qr_svg(uri), media_type="image/svg+xml", headers=NO_STORE)


@router.post(
    "/mfa/totp/confirm",
    response_model=TotpConfirmed | TotpEnrolled,
    operation_id="confirmTotp",
    summary="Activate TOTP with a first code",
    responses=responses(
        NothingPending,
        InvalidToken,
        InsufficientUserAuthentication,
        InvalidCode,
        RequestValidationFailed,
        ServiceUnavailable,
    ),
)
async def totp_confirm(
    body: TotpCode,
    claims: EnrollingClaims,
    db: SessionDep,
    svc: ServicesDep,
    response: Response,
    client: ClientDep,
) -> TotpConfirmed | TotpEnrolled:
    """A current code from the app proves it holds the pending secret; that code's time step
    counts as used. Returns 10 backup codes, shown this once (`[]` when the user already had
    a second factor). Other sessions and pending challenges end. Needs a recent
    authentication, as the setup does.

    With an enrollment token (`MFA_REQUIRE_MFA`) instead of an access token, the answer has
    the `TokenResponse` fields too: the login's session, amr `["pwd", "mfa", "otp"]`."""
    response.headers.update(NO_STORE)
    return await service.confirm_totp(db, svc, client, claims, body.code)


@router.delete(
    "/mfa/totp",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="removeTotp",
    summary="Remove TOTP (and the backup codes, if no other factor is left)",
    responses=responses(
        InvalidToken,
        InvalidCredentials,
        InvalidCode,
        MfaNotEnabled,
        TotpNotEnabled,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
        Overloaded,
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
    operation_id="regenerateBackupCodes",
    summary="Replace the backup codes",
    responses=responses(
        InvalidToken,
        InvalidCode,
        MfaNotEnabled,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
    ),
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
    operation_id="stepUp",
    summary="Prove a second factor again for a fresh auth_time",
    responses=responses(
        InvalidToken,
        InvalidCode,
        MfaNotEnabled,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
    ),
)
async def step_up(
    body: FactorProof, claims: CurrentClaims, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse:
    """For services that demand recent MFA (RFC 9470): same session, new tokens whose
    `auth_time` is now and whose `amr` is `["mfa", <the factor just proven>]`. With a
    security key: first `POST /mfa/step-up/options`, then send `{"webauthn": …}`."""
    return await service.step_up(db, svc, client, claims, body)
