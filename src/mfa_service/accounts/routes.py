from __future__ import annotations

from fastapi import APIRouter, Response, status

from mfa_service.accounts import service
from mfa_service.accounts.schemas import (
    Credentials,
    MeOut,
    PasswordChangeRequest,
    ReauthenticateRequest,
    RegisterRequest,
    UserOut,
)
from mfa_service.challenges.schemas import ChallengeResponse
from mfa_service.db import SessionDep
from mfa_service.errors import (
    EmailTaken,
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    Overloaded,
    RateLimited,
    ServiceUnavailable,
    StepUpRequired,
    WeakPassword,
    responses,
)
from mfa_service.net import ClientDep
from mfa_service.services import ServicesDep
from mfa_service.sessions.dependencies import CurrentClaims
from mfa_service.sessions.schemas import TokenResponse

router = APIRouter()


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    tags=["accounts"],
    summary="Create an account",
    responses=responses(EmailTaken, WeakPassword, RateLimited, Overloaded),
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
    response_model=TokenResponse | ChallengeResponse,
    response_model_exclude_none=True,  # `webauthn` only when the user has a security key
    tags=["accounts"],
    summary="Log in with email and password",
    responses=responses(InvalidCredentials, RateLimited, ServiceUnavailable),
)
async def login(
    body: Credentials, db: SessionDep, svc: ServicesDep, client: ClientDep
) -> TokenResponse | ChallengeResponse:
    """Tokens for an account without MFA; with MFA, a challenge for `POST /mfa/challenge`.

    Unknown email and wrong password give the same answer.
    """
    return await service.login(db, svc, client, body.email, body.password)


@router.post(
    "/auth/reauthenticate",
    response_model=TokenResponse,
    tags=["accounts"],
    summary="Prove the password again for a fresh auth_time",
    responses=responses(
        InvalidToken, InvalidCredentials, StepUpRequired, RateLimited, ServiceUnavailable
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
    tags=["accounts"],
    summary="Change the password",
    response_class=Response,
    responses=responses(InvalidToken, InvalidCredentials, InvalidCode, WeakPassword, RateLimited),
)
async def change_password(
    body: PasswordChangeRequest,
    claims: CurrentClaims,
    db: SessionDep,
    svc: ServicesDep,
    client: ClientDep,
) -> None:
    """Every other session of the user ends; this one stays signed in."""
    await service.change_password(
        db, svc, client, claims, body.current_password, body.new_password, body.second_factor()
    )


@router.get(
    "/users/me",
    response_model=MeOut,
    tags=["accounts"],
    summary="The caller's account",
    responses=responses(InvalidToken),
)
async def me(claims: CurrentClaims, db: SessionDep) -> MeOut:
    user = await service.current_user(db, claims)
    return MeOut(
        id=user.id, email=user.email, mfa_enabled=user.mfa_enabled, created_at=user.created_at
    )
