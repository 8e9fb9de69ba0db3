from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Response, status
from pydantic import Field

from mfa_service.accounts import service
from mfa_service.accounts.schemas import (
    LoginRequest,
    MeOut,
    PasswordChangeRequest,
    ReauthenticateRequest,
    RegisterRequest,
    UserOut,
)
from mfa_service.challenges.schemas import ChallengeResponse
from mfa_service.db import SessionDep, statements_autocommit
from mfa_service.enrollment.schemas import EnrollmentRequired
from mfa_service.errors import (
    AccountDisabled,
    EmailNotVerified,
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    Overloaded,
    RateLimited,
    RequestValidationFailed,
    ServiceUnavailable,
    StepUpRequired,
    WeakPassword,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import SignedIn, TokenResponse

router = APIRouter(tags=["accounts"])

# The login answer: tokens, or a challenge when the account has a second factor.
LoginResponse = Annotated[
    SignedIn | ChallengeResponse | EnrollmentRequired, Field(discriminator="status")
]


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    operation_id="register",
    summary="Create an account",
    responses=responses(
        EmailTaken,
        RequestValidationFailed,
        WeakPassword,
        RateLimited,
        ServiceUnavailable,
        Overloaded,
    ),
)
async def register(
    body: RegisterRequest, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> UserOut:
    """Passwords are 8–128 characters; the most common passwords are refused. Each client
    IP may try 20 times an hour, whatever the answers (then 429)."""
    user = await service.register(db, svc, client, body.email, body.password)
    return UserOut(id=user.id, email=user.email, mfa_enabled=user.mfa_enabled)


@router.post(
    "/auth/login",
    response_model=LoginResponse,
    response_model_exclude_none=True,  # `webauthn` only when the user has a security key
    operation_id="login",
    summary="Log in with email and password",
    response_description="`status` tells which: `authenticated` (tokens), `mfa_required` "
    "(a challenge) or `mfa_enrollment_required` (MFA_REQUIRE_MFA).",
    responses=responses(
        InvalidCredentials,
        AccountDisabled,
        EmailNotVerified,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
        Overloaded,
    ),
)
async def login(
    body: LoginRequest, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> SignedIn | ChallengeResponse | EnrollmentRequired:
    """Tokens (`status: authenticated`) for an account without a second factor; with one, a
    challenge (`status: mfa_required`) to answer at `POST /mfa/challenge`.

    Unknown email and wrong password give the same answer. Wrong passwords are counted per
    account and client IP (10 in 15 min), per account (100) and per client IP (100); beyond a
    limit the answer is 429 with `Retry-After`, even for the right password.

    Tokens come with a `device_token`: send it with the next login to this account from this
    device. A login with a valid one is exempt from those three limits (a stranger's guessing
    cannot lock the owner out) and has its own: 10 wrong passwords spend the device token. If
    the device was remembered at `POST /mfa/challenge` (`remember_device`), the login skips
    the challenge: amr `["pwd", "mfa", "device"]`.

    With `MFA_REQUIRE_VERIFIED_EMAIL=true`, the right password of an account whose email is
    not verified answers 403 `email_not_verified`, and a fresh verification link is mailed.

    With `MFA_REQUIRE_MFA=true`, an account without a second factor gets no tokens but
    `status: mfa_enrollment_required` and an `enrollment_token`: a Bearer credential for the
    enrollment routes only (TOTP setup, QR, confirm; WebAuthn registration options and
    registration), whose success answers with tokens.
    """
    return await service.login(db, svc, client, body.email, body.password, body.device_token)


@router.post(
    "/auth/reauthenticate",
    response_model=TokenResponse,
    operation_id="reauthenticate",
    summary="Prove the password again for a fresh auth_time",
    responses=responses(
        InvalidToken,
        InvalidCredentials,
        StepUpRequired,
        RequestValidationFailed,
        RateLimited,
        ServiceUnavailable,
        Overloaded,
    ),
)
async def reauthenticate(
    body: ReauthenticateRequest,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> TokenResponse:
    """For a user without a second factor, before an action that needs a recent
    authentication (enrolling TOTP): same session, new tokens whose `auth_time` is now and
    whose `amr` is `["pwd"]`. Counted like a login. A user with a second factor gets 403
    `step_up_required`: use `POST /mfa/step-up`."""
    return await service.reauthenticate(db, svc, client, claims, body.password)


@router.post(
    "/auth/password",
    status_code=status.HTTP_204_NO_CONTENT,
    operation_id="changePassword",
    summary="Change the password",
    response_class=Response,
    responses=responses(
        InvalidToken,
        InvalidCredentials,
        InvalidCode,
        RequestValidationFailed,
        WeakPassword,
        RateLimited,
        ServiceUnavailable,
        Overloaded,
    ),
)
async def change_password(
    body: PasswordChangeRequest,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> None:
    """Needs the current password and, when MFA is on, a second factor (`code`,
    `backup_code` or `webauthn`: a missing or wrong one is 401 `invalid_code`). Every other
    session of the user and its pending challenges end; this session stays signed in."""
    await service.change_password(
        db, svc, client, claims, body.current_password, body.new_password, body.second_factor()
    )


@router.get(
    "/users/me",
    response_model=MeOut,
    operation_id="getCurrentUser",
    summary="The caller's account",
    responses=responses(InvalidToken, ServiceUnavailable),
)
@statements_autocommit
async def me(claims: CurrentClaims, db: SessionDep) -> MeOut:
    """The account the access token was issued to."""
    user = await service.current_user(db, claims)
    return MeOut(
        id=user.id,
        email=user.email,
        mfa_enabled=user.mfa_enabled,
        created_at=user.created_at,
        email_verified=user.email_verified,
    )
