"""The caller of an enrollment route: an access token, or an enrollment token."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfa_service.accounts import repository as accounts
from mfa_service.db import SessionDep
from mfa_service.enrollment import store
from mfa_service.errors import InvalidToken
from mfa_service.services import ServicesDep
from mfa_service.sessions import service as sessions
from mfa_service.sessions.dependencies import bearer
from mfa_service.tokens.access import AccessClaims

# Its own scheme, so the document (and Swagger UI) shows it as the alternative it is.
enrollment_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="EnrollmentToken",
    description="The enrollment_token from /auth/login (status mfa_enrollment_required, "
    "MFA_REQUIRE_MFA): accepted by the enrollment routes only.",
)


async def enrolling_claims(
    svc: ServicesDep,
    db: SessionDep,
    access: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    enrollment: Annotated[HTTPAuthorizationCredentials | None, Depends(enrollment_bearer)],
) -> AccessClaims:
    credentials = access or enrollment  # one Authorization header: both read it
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken()
    token = credentials.credentials
    if "." in token:  # a JWT; enrollment tokens are base64url, no dots
        return await sessions.authenticate(db, svc, token)
    claims = await store.claims_for(svc, token)
    user = await accounts.get(db, claims.sub)
    # A password or MFA change since the login voids its enrollment token, as its sessions.
    if user is None or user.credentials_version != claims.credentials_version:
        raise InvalidToken()
    return claims


EnrollingClaims = Annotated[AccessClaims, Depends(enrolling_claims)]
