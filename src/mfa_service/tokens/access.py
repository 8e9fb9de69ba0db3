"""Access tokens: JWTs signed with the active key, verified against the published ones."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import jwt

from mfa_service.clock import Clock
from mfa_service.config import Settings
from mfa_service.errors import InvalidToken
from mfa_service.tokens.keys import KeyRing, KeyStore

# RFC 9068 media type: a token of another kind (an ID token, say) is never taken as access.
ACCESS_TOKEN_TYP = "at+jwt"
REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti", "auth_time", "amr", "sid"]


@dataclass(frozen=True)
class AccessClaims:
    sub: uuid.UUID
    sid: uuid.UUID
    jti: str
    iat: int
    exp: int
    auth_time: int
    amr: tuple[str, ...]


def mint_access_token(
    ring: KeyRing,
    settings: Settings,
    clock: Clock,
    *,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    auth_time: datetime,
    amr: list[str],
    not_after: datetime,
) -> tuple[str, AccessClaims]:
    """A signed access token; it expires with its session (`not_after`) at the latest."""
    issued = int(clock.time())
    expires = min(issued + settings.access_token_ttl, int(not_after.timestamp()))
    if expires <= issued:
        raise InvalidToken()  # the session has ended
    claims = AccessClaims(
        sub=user_id,
        sid=session_id,
        jti=uuid.uuid4().hex,
        iat=issued,
        exp=expires,
        auth_time=int(auth_time.timestamp()),
        amr=tuple(amr),
    )
    payload = {
        "iss": settings.issuer,
        "aud": settings.audience,
        "sub": str(user_id),
        "iat": issued,
        "nbf": issued,
        "exp": claims.exp,
        "jti": claims.jti,
        "auth_time": claims.auth_time,
        "amr": list(amr),
        "sid": str(session_id),
    }
    token = jwt.encode(
        payload,
        ring.private_key,
        algorithm=ring.signing_algorithm,
        headers={"kid": ring.signing_kid, "typ": ACCESS_TOKEN_TYP},
    )
    return token, claims


async def verify_access_token(
    token: str, keys: KeyStore, settings: Settings, clock: Clock
) -> AccessClaims:
    """Signature, algorithm pinned to the key, typ, iss, aud, exp and nbf; else InvalidToken."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken() from None
    kid = header.get("kid")
    if header.get("typ") != ACCESS_TOKEN_TYP or not isinstance(kid, str):
        raise InvalidToken()
    key = await keys.public_key(kid)
    if key is None:
        raise InvalidToken()
    try:
        # exp/nbf are checked below against the injected clock, so tests can move time.
        payload = jwt.decode(
            token,
            key.key,
            algorithms=[key.algorithm],
            audience=settings.audience,
            issuer=settings.issuer,
            options={
                "require": REQUIRED_CLAIMS,
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
            },
        )
        current = clock.time()
        if not (int(payload["nbf"]) <= current < int(payload["exp"])):
            raise InvalidToken()
        return AccessClaims(
            sub=uuid.UUID(payload["sub"]),
            sid=uuid.UUID(payload["sid"]),
            jti=str(payload["jti"]),
            iat=int(payload["iat"]),
            exp=int(payload["exp"]),
            auth_time=int(payload["auth_time"]),
            amr=tuple(str(a) for a in payload["amr"]),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        raise InvalidToken() from None
