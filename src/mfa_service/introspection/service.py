"""RFC 7662 token introspection for the services we issue tokens to.

A service that cannot wait for a token to expire (after a logout, a password change) asks
here whether it is still active. Only configured clients may ask: an answer reveals claims.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.errors import InvalidClient, InvalidToken
from mfa_service.introspection.schemas import Introspection
from mfa_service.net import Client
from mfa_service.services import Services
from mfa_service.sessions.service import authenticate

INACTIVE = Introspection(active=False)
# Compared against when the client id is unknown, so timing does not tell which ids exist.
_NO_SECRET = secrets.token_bytes(32)


def _digest(secret: str | bytes) -> bytes:
    # Equal-length inputs for compare_digest, whatever the lengths of the secrets.
    return hashlib.sha256(secret.encode() if isinstance(secret, str) else secret).digest()


async def authenticate_client(
    svc: Services, client: Client, client_id: str | None, secret: str | None
) -> str:
    attempt = await svc.login_limiter.reserve_ip("introspect", client.ip_bucket)
    expected = svc.settings.introspection_clients.get(client_id or "")
    matches = hmac.compare_digest(
        _digest(secret or ""),
        _digest(expected.get_secret_value() if expected else _NO_SECRET),
    )
    ok = expected is not None and matches and bool(client_id)
    await svc.login_limiter.settle(attempt, ok)  # a genuine client gives its count back
    if not ok or not client_id:
        raise InvalidClient()
    return client_id


async def introspect(db: AsyncSession, svc: Services, token: str) -> Introspection:
    try:
        claims = await authenticate(db, svc, token)
    except InvalidToken:
        return INACTIVE
    return Introspection(
        active=True,
        token_type="Bearer",
        iss=svc.settings.issuer,
        aud=svc.settings.audience,
        sub=str(claims.sub),
        iat=claims.iat,
        nbf=claims.iat,
        exp=claims.exp,
        jti=claims.jti,
        auth_time=claims.auth_time,
        amr=list(claims.amr),
        sid=str(claims.sid),
    )
