from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.db import SessionDep
from mfa_service.errors import (
    EmailAlreadyVerified,
    InvalidCode,
    InvalidResetToken,
    InvalidToken,
    InvalidVerificationToken,
    NoWebAuthnCredential,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    WeakPassword,
    responses,
)
from mfa_service.factors.webauthn.schemas import RequestOptions
from mfa_service.net import ClientDep
from mfa_service.recovery import service
from mfa_service.recovery.schemas import Accepted, ForgotRequest, ResetRequest, TokenRequest
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims

router = APIRouter(tags=["accounts"])

FORGOT_ANSWER = (
    "If an account has this email, a link to reset its password is on its way. It works once, "
    "for a limited time."
)
VERIFICATION_ANSWER = "A link to confirm the email address is on its way."


@router.post(
    "/auth/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    operation_id="forgotPassword",
    summary="Mail a password-reset link",
    responses=responses(RequestValidationFailed, RateLimited, ServiceUnavailable),
)
async def forgot(
    body: ForgotRequest, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> Accepted:
    """The same answer, in the same time, whether or not the email has an account; an
    account gets a link to `MFA_PASSWORD_RESET_URL?token=…` (single use, 30 min; a newer
    link voids older ones). Counted per client IP (20 an hour) and per email (5 an hour),
    whatever the answer; beyond that 429."""
    await service.forgot(db, svc, client, body.email)
    return Accepted(detail=FORGOT_ANSWER)


@router.post(
    "/auth/password/reset/options",
    response_model=RequestOptions,
    operation_id="passwordResetOptions",
    summary="WebAuthn options for a password reset",
    responses=responses(
        InvalidResetToken, NoWebAuthnCredential, RequestValidationFailed, ServiceUnavailable
    ),
)
async def reset_options(body: TokenRequest, db: SessionDep, svc: ServicesDep) -> RequestOptions:
    """For a user who proves their second factor with a security key: request options bound
    to this reset link, for the `webauthn` field of `POST /auth/password/reset`."""
    return await service.reset_options(db, svc, body.token)


@router.post(
    "/auth/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="resetPassword",
    summary="Set a new password with a mailed link",
    responses=responses(
        InvalidResetToken,
        InvalidCode,
        RequestValidationFailed,
        WeakPassword,
        RateLimited,
        ServiceUnavailable,
    ),
)
async def reset(body: ResetRequest, db: SessionDep, svc: ServicesDep, client: ClientDep) -> None:
    """`token` from the link. A user with a second factor also gives one of `code`,
    `backup_code` or `webauthn` (a missing or wrong one is 401 `invalid_code`; the factor's
    lock applies). Every session, pending challenge and remembered device of the user ends,
    and every other reset link; the email counts as verified."""
    await service.reset(db, svc, client, body.token, body.new_password, body.second_factor())


@router.post(
    "/auth/email/verification",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    operation_id="requestEmailVerification",
    summary="Mail a link to verify the email address",
    responses=responses(InvalidToken, EmailAlreadyVerified, RateLimited, ServiceUnavailable),
)
async def request_verification(claims: CurrentClaims, db: SessionDep, svc: ServicesDep) -> Accepted:
    """A link to `MFA_EMAIL_VERIFY_URL?token=…` (single use; a newer one voids older ones),
    at most 5 an hour."""
    await service.request_verification(db, svc, claims)
    return Accepted(detail=VERIFICATION_ANSWER)


@router.post(
    "/auth/email/verify",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    operation_id="verifyEmail",
    summary="Verify the email address with a mailed link",
    responses=responses(InvalidVerificationToken, RequestValidationFailed, ServiceUnavailable),
)
async def verify(body: TokenRequest, db: SessionDep, svc: ServicesDep, client: ClientDep) -> None:
    """`token` from the link: the account's `email_verified` becomes true."""
    await service.verify_email(db, svc, client, body.token)
