"""Enrollment tokens in Redis: opaque, found by their SHA-256, usable until they expire (by
the service clock) or until an enrollment with them succeeds."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from mfa_service.clock import now
from mfa_service.errors import InvalidToken
from mfa_service.services import Services
from mfa_service.tokens.access import AccessClaims


@dataclass(frozen=True)
class EnrollmentClaims(AccessClaims):
    """Who an enrollment token speaks for, in the shape the enrollment routes read: `sid`
    names no session (it binds pending WebAuthn options to this token), `amr` is the
    password the login proved, `auth_time` that login."""

    credentials_version: int
    key: str  # the token's Redis key: deleted when the enrollment succeeds


def _key(svc: Services, token: str) -> tuple[str, str]:
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    return token_hash, svc.rkey("enroll", token_hash)


async def create(svc: Services, user_id: uuid.UUID, credentials_version: int) -> str:
    token = secrets.token_urlsafe(32)
    _, key = _key(svc, token)
    at = int(now(svc.clock).timestamp())
    expires = at + svc.settings.enrollment_ttl
    value = f"{user_id.hex}:{credentials_version}:{at}:{expires}"
    # Expiry is decided by the service clock; the Redis TTL only collects the garbage.
    await svc.redis.set(key, value.encode(), ex=svc.settings.enrollment_ttl)
    return token


async def claims_for(svc: Services, token: str) -> EnrollmentClaims:
    """The enrollment a token names, or InvalidToken (unknown, used or expired)."""
    token_hash, key = _key(svc, token)
    raw = await svc.redis.get(key)
    if raw is None:
        raise InvalidToken()
    user_hex, version, at, expires = (raw.decode() if isinstance(raw, bytes) else raw).split(":")
    if svc.clock.time() >= int(expires):
        raise InvalidToken()
    return EnrollmentClaims(
        sub=uuid.UUID(hex=user_hex),
        sid=uuid.UUID(hex=token_hash[:32]),
        jti="",
        iat=int(at),
        exp=int(expires),
        auth_time=int(at),
        amr=("pwd",),
        credentials_version=int(version),
        key=key,
    )


async def burn(svc: Services, claims: EnrollmentClaims) -> None:
    """Single use of the enrollment's success: the first to delete the key wins."""
    if not await svc.redis.delete(claims.key):
        raise InvalidToken()
