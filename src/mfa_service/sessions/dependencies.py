"""The caller's access token, checked: signature and claims, not logged out, session alive."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mfa_service.clock import now
from mfa_service.db import SessionDep
from mfa_service.errors import InvalidToken
from mfa_service.services import ServicesDep
from mfa_service.sessions import repository
from mfa_service.tokens.access import AccessClaims, verify_access_token

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
    claims = await verify_access_token(credentials.credentials, svc.keys, svc.settings, svc.clock)
    if await svc.redis.exists(svc.rkey("deny", claims.jti)):
        raise InvalidToken()
    # The database decides whether the session lives, so a lost Redis cannot revive a logout.
    session = await repository.get_session(db, claims.sid)
    if (
        session is None
        or session.revoked_at is not None
        or session.user_id != claims.sub
        or now(svc.clock) >= session.expires_at
    ):
        raise InvalidToken()
    return claims


CurrentClaims = Annotated[AccessClaims, Depends(current_claims)]
