"""The caller's access token, checked: signature and claims, not logged out, session alive."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfa_service.db import SessionDep
from mfa_service.errors import InvalidToken
from mfa_service.services import ServicesDep
from mfa_service.sessions import service
from mfa_service.tokens.access import AccessClaims

bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT",
    description="An access token from /auth/login, /mfa/challenge or /auth/refresh.",
)


async def current_claims(
    svc: ServicesDep,
    db: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AccessClaims:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken()
    return await service.authenticate(db, svc, credentials.credentials)


CurrentClaims = Annotated[AccessClaims, Depends(current_claims)]
