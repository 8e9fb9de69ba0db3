"""Signing keys: generated, sealed into the database, published as a JWKS, rotated.

Every instance reads keys from the database, so a rotation done by one (or by the CLI) reaches
the others at their next reload: when they meet an unknown `kid`, or after `RELOAD_SECONDS`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from mfa_service.clock import Clock, now
from mfa_service.config import Settings
from mfa_service.db import READ_ONLY
from mfa_service.secretbox import SecretBox
from mfa_service.tokens.models import SigningKey

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
RELOAD_SECONDS = 60.0
UNKNOWN_KID_RELOAD_SECONDS = 5.0
# The JWKS we publish is at most this old, so a key made by `keys rotate` (or by another
# instance) is published everywhere before any instance signs with it.
PUBLISH_RELOAD_SECONDS = 5.0
# A new key signs only once every instance publishes it; until then its predecessor signs on.
SIGN_AFTER_SECONDS = 2 * PUBLISH_RELOAD_SECONDS


class SigningKeyMissing(RuntimeError):
    """No usable signing key, and this environment may not generate one by itself."""


def generate_private_key(algorithm: str) -> PrivateKey:
    if algorithm == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if algorithm == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    if algorithm == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=3072)
    raise ValueError(f"unsupported algorithm {algorithm}")


def public_jwk(private_key: PrivateKey, algorithm: str, kid: str) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(
        str(get_default_algorithms()[algorithm].to_jwk(private_key.public_key()))
    )
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return jwk


@dataclass(frozen=True)
class PublicKey:
    kid: str
    algorithm: str
    key: Any
    jwk: dict[str, Any]


@dataclass(frozen=True)
class KeyRing:
    signing_kid: str
    signing_algorithm: str
    private_key: PrivateKey = field(repr=False)
    public: dict[str, PublicKey]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.jwk for k in self.public.values()]}


async def create_key(db: AsyncSession, box: SecretBox, algorithm: str, clock: Clock) -> SigningKey:
    """Add a new key and retire the others (they stay published while their tokens live)."""
    private_key = generate_private_key(algorithm)
    kid = secrets.token_urlsafe(12)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    at = now(clock)
    for old in await db.exec(select(SigningKey).where(col(SigningKey.retired_at).is_(None))):
        old.retired_at = at
        db.add(old)
    row = SigningKey(
        kid=kid,
        algorithm=algorithm,
        public_jwk=json.dumps(public_jwk(private_key, algorithm, kid)),
        private_key=box.seal(pem, context=_context(kid)),
        data_key_id=box.key_id,
        created_at=at,
    )
    db.add(row)
    await db.flush()
    return row


def _context(kid: str) -> bytes:
    return f"signing-key:{kid}".encode()


async def list_keys(db: AsyncSession) -> list[SigningKey]:
    return list(await db.exec(select(SigningKey).order_by(col(SigningKey.created_at).desc())))


async def load_keyring(
    db: AsyncSession, box: SecretBox, settings: Settings, clock: Clock
) -> KeyRing:
    rows = await list_keys(db)
    active = next((r for r in rows if r.retired_at is None), None)
    if active is None or active.algorithm != settings.jwt_algorithm:
        raise SigningKeyMissing(
            f"no active {settings.jwt_algorithm} signing key; run: mfa-service keys rotate"
        )
    # A retired key is published until every token it signed has expired (plus a minute).
    keep_after = now(clock) - timedelta(seconds=settings.access_token_ttl + 60)
    public: dict[str, PublicKey] = {}
    for row in rows:
        if row.retired_at is None or row.retired_at > keep_after:
            jwk = json.loads(row.public_jwk)
            algorithm = get_default_algorithms()[row.algorithm]
            public[row.kid] = PublicKey(row.kid, row.algorithm, algorithm.from_jwk(jwk), jwk)
    # A verifier that meets a new kid refetches the JWKS from any instance, and that one may
    # not have reloaded yet: a young key lets the key it replaced sign on for a few seconds
    # (the first key, or the first of a newly configured algorithm, signs at once).
    signing = active
    if active.created_at > now(clock) - timedelta(seconds=SIGN_AFTER_SECONDS):
        replaced = [
            r
            for r in rows
            if r.retired_at is not None and r.kid in public and r.algorithm == active.algorithm
        ]
        signing = max(replaced, key=lambda r: r.retired_at or active.created_at, default=active)
    pem = box.open(signing.private_key, key_id=signing.data_key_id, context=_context(signing.kid))
    private_key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(private_key, PrivateKey)
    return KeyRing(signing.kid, signing.algorithm, private_key, public)


async def ensure_key(db: AsyncSession, box: SecretBox, settings: Settings, clock: Clock) -> None:
    """Development: make a key on first start (or when the algorithm setting changed)."""
    rows = await list_keys(db)
    active = next((r for r in rows if r.retired_at is None), None)
    if active is not None and active.algorithm == settings.jwt_algorithm:
        return
    if settings.env == "production":
        raise SigningKeyMissing(
            f"no active {settings.jwt_algorithm} signing key; run: mfa-service keys rotate"
        )
    await create_key(db, box, settings.jwt_algorithm, clock)


class KeyStore:
    """The current key ring, reloaded from the database now and then."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        box: SecretBox,
        settings: Settings,
        clock: Clock,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._box = box
        self._settings = settings
        self._clock = clock
        self._ring: KeyRing | None = None
        self._loaded_at = 0.0
        self._reloading = asyncio.Lock()

    async def reload(self) -> KeyRing:
        async with self._sessionmaker() as db:
            await db.connection(execution_options=READ_ONLY)
            self._ring = await load_keyring(db, self._box, self._settings, self._clock)
        self._loaded_at = self._clock.time()
        return self._ring

    async def ring(self, max_age: float = RELOAD_SECONDS) -> KeyRing:
        # One reload at a time: concurrent requests that all found the ring stale each took a
        # second pooled connection while holding their own, and ran the pool dry (benchmark).
        # While one request reloads, the others keep signing with the current ring.
        if self._ring is not None and (
            self._clock.time() - self._loaded_at <= max_age or self._reloading.locked()
        ):
            return self._ring
        async with self._reloading:
            if self._ring is None or self._clock.time() - self._loaded_at > max_age:
                await self.reload()
            assert self._ring is not None
            return self._ring

    async def public_key(self, kid: str) -> PublicKey | None:
        ring = await self.ring()
        if (
            kid not in ring.public
            and self._clock.time() - self._loaded_at > UNKNOWN_KID_RELOAD_SECONDS
        ):
            ring = await self.reload()
        return ring.public.get(kid)
