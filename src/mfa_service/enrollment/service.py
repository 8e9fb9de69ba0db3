"""Enforced enrollment: start it at login, finish it with a session."""

from __future__ import annotations

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.accounts import repository as accounts
from mfa_service.accounts.models import User
from mfa_service.enrollment import store
from mfa_service.enrollment.schemas import EnrollmentRequired
from mfa_service.enrollment.store import EnrollmentClaims
from mfa_service.errors import InvalidToken
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions import service as sessions
from mfa_service.sessions.schemas import TokenResponse


async def start(svc: Services, user: User) -> EnrollmentRequired:
    token = await store.create(svc, user.id, user.credentials_version)
    return EnrollmentRequired(enrollment_token=token, expires_in=svc.settings.enrollment_ttl)


async def claim(db: AsyncSession, claims: EnrollmentClaims) -> None:
    """Before the first factor is stored: this enrollment, and no other request with the same
    token (nor a change since the login), moves the user's credentials on. Called once the
    factor is proven, so a wrong code leaves the enrollment open."""
    if not await accounts.claim_credentials_version(db, claims.sub, claims.credentials_version):
        raise InvalidToken()


async def finish(
    db: AsyncSession,
    svc: Services,
    client: Client,
    claims: EnrollmentClaims,
    user: User,
    factor_amr: str,
) -> TokenResponse:
    """The first factor is enrolled (the user is on a new credentials version): the login
    becomes a session whose amr names the password and the factor just proven."""
    await store.burn(svc, claims)
    return await sessions.start_session(
        db,
        svc,
        client=client,
        user_id=user.id,
        amr=["pwd", "mfa", factor_amr],
        credentials_version=user.credentials_version,
    )
