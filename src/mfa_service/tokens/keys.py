"""Signing keys: generated, sealed into the database, published as a JWKS, rotated, revoked.

Every instance reads keys from the database, so a rotation or a revocation done by one (or by
the CLI) reaches the others at their next reload: every instance reloads its key ring when it
is `RELOAD_SECONDS` old, one reload at a time.
"""

from __future__ import annotations

import asyncio
import json
import math
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
from mfa_service.errors import ServiceUnavailable
from mfa_service.secretbox import SecretBox
from mfa_service.tokens.models import SigningKey

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
# The key ring is reloaded when it is this old: a key made, retired or revoked by `keys` (or by
# another instance) is seen everywhere within seconds. Reloads are due by age only, so nothing a
# client sends (a flood of tokens naming unknown kids) makes a process reload more often.
RELOAD_SECONDS = 5.0
# The JWKS we publish is at most this old, so a key made by `keys rotate` (or by another
# instance) is published everywhere before any instance signs with it.
PUBLISH_RELOAD_SECONDS = RELOAD_SECONDS
# A new key signs only once every instance publishes it; until then its predecessor signs on.
SIGN_AFTER_SECONDS = 2 * PUBLISH_RELOAD_SECONDS
# SPEC 3: a revoked key leaves the JWKS and its tokens are refused within 10 s. Verification
# and the JWKS never use a ring read longer ago than this: past it they wait for the reload.
REVOKED_WITHIN_SECONDS = 10.0
# A reload that failed (the database away) is retried this long after, not by every request.
RETRY_SECONDS = 1.0


class SigningKeyMissing(RuntimeError):
    """No usable signing key, and this environment may not generate one by itself."""


class UnknownSigningKey(LookupError):
    """`keys revoke` named a kid that is not in the database."""

    def __init__(self, kid: str) -> None:
        super().__init__(f"no signing key with kid {kid!r} (see: mfa-service keys list)")


class SigningKeyAlreadyRevoked(RuntimeError):
    def __init__(self, kid: str, revoked_at: datetime) -> None:
        self.revoked_at = revoked_at
        at = revoked_at.isoformat(timespec="seconds")
        super().__init__(f"signing key {kid} was already revoked at {at}; nothing changed")


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
    while kid.startswith("-"):  # a kid is typed on command lines: `keys revoke KID`
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


async def revoke_key(
    db: AsyncSession, box: SecretBox, settings: Settings, clock: Clock, kid: str
) -> SigningKey | None:
    """Revoke `kid`: never published or accepted again, never signs again. When it is the
    active key, a new `MFA_JWT_ALGORITHM` key replaces it and signs at once (returned).

    A revoked key that was the signer of a young key's grace period (see `build_keyring`)
    needs no replacement: that young key then signs at once."""
    query = select(SigningKey).where(col(SigningKey.kid) == kid).with_for_update()
    row = (await db.exec(query)).first()
    if row is None:
        raise UnknownSigningKey(kid)
    if row.revoked_at is not None:
        raise SigningKeyAlreadyRevoked(kid, row.revoked_at)
    replacement = None
    if row.retired_at is None:
        replacement = await create_key(db, box, settings.jwt_algorithm, clock)
    row.revoked_at = now(clock)
    db.add(row)
    await db.flush()
    return replacement


async def load_keyring(
    db: AsyncSession, box: SecretBox, settings: Settings, clock: Clock
) -> KeyRing:
    return build_keyring(await list_keys(db), box, settings, clock)


def _active(rows: Sequence[SigningKey]) -> SigningKey | None:
    """The newest key neither retired nor revoked (`rows` newest first)."""
    return next((r for r in rows if r.retired_at is None and r.revoked_at is None), None)


def build_keyring(
    rows: Sequence[SigningKey], box: SecretBox, settings: Settings, clock: Clock
) -> KeyRing:
    """The ring of `rows` (newest first): what is published, and which key signs."""
    active = _active(rows)
    if active is None or active.algorithm != settings.jwt_algorithm:
        raise SigningKeyMissing(
            f"no active {settings.jwt_algorithm} signing key; run: mfa-service keys rotate"
        )
    # A retired key is published until every token it signed has expired (plus a minute); a
    # revoked one never again.
    keep_after = now(clock) - timedelta(seconds=settings.access_token_ttl + 60)
    public: dict[str, PublicKey] = {}
    for row in rows:
        if row.revoked_at is None and (row.retired_at is None or row.retired_at > keep_after):
            jwk = json.loads(row.public_jwk)
            algorithm = get_default_algorithms()[row.algorithm]
            public[row.kid] = PublicKey(row.kid, row.algorithm, algorithm.from_jwk(jwk), jwk)
    # A verifier that meets a new kid refetches the JWKS from any instance, and that one may
    # not have reloaded yet: a young key lets the key it replaced (the last one retired) sign
    # on for a few seconds. The first key, the first of a newly configured algorithm, and a
    # key that replaced a revoked one sign at once: a revoked key never signs again, and no
    # older key takes its place.
    signing = active
    if active.created_at > now(clock) - timedelta(seconds=SIGN_AFTER_SECONDS):
        retired = [r for r in rows if r.retired_at is not None]
        replaced = max(retired, key=lambda r: r.retired_at or active.created_at, default=None)
        if (
            replaced is not None
            and replaced.kid in public
            and replaced.algorithm == active.algorithm
        ):
            signing = replaced
    pem = box.open(signing.private_key, key_id=signing.data_key_id, context=_context(signing.kid))
    # The PEM is our own, authenticated by the AES-GCM seal: OpenSSL's RSA consistency check
    # (170 ms of CPU for a 3072-bit key, holding the event loop) would prove nothing more.
    private_key = serialization.load_pem_private_key(
        pem, password=None, unsafe_skip_rsa_key_validation=True
    )
    assert isinstance(private_key, PrivateKey)
    return KeyRing(signing.kid, signing.algorithm, private_key, public)


async def ensure_key(db: AsyncSession, box: SecretBox, settings: Settings, clock: Clock) -> None:
    """Development: make a key on first start (or when the algorithm setting changed)."""
    active = _active(await list_keys(db))
    if active is not None and active.algorithm == settings.jwt_algorithm:
        return
    if settings.env == "production":
        raise SigningKeyMissing(
            f"no active {settings.jwt_algorithm} signing key; run: mfa-service keys rotate"
        )
    await create_key(db, box, settings.jwt_algorithm, clock)


class KeyStore:
    """The current key ring, reloaded from the database when it is `RELOAD_SECONDS` old.

    One reload at a time, shared: a request that finds the ring due starts it, and the others
    keep the current ring meanwhile (concurrent requests that each reloaded took a second pooled
    connection while holding their own, and ran the pool dry: benchmark; 100 forged kids ran
    100 reloads at once). A request never starts a reload because of what it carries, so a
    flood of tokens naming unknown kids costs at most one reload per `RELOAD_SECONDS`."""

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
        self._read_at = -math.inf  # when the ring's rows were read (at the latest)
        self._retry_at = -math.inf  # after a failed reload, no new one before this
        self._reloading: asyncio.Task[KeyRing] | None = None

    async def reload(self) -> KeyRing:
        """Read the keys now, or wait for the reload already running."""
        task = self._reloading
        if task is None:
            task = self._reloading = asyncio.create_task(self._load())
            # Its failure is reported to whoever waits; never "exception was never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        # A caller that goes away (its client hung up) does not cancel a reload others await.
        return await asyncio.shield(task)

    async def _load(self) -> KeyRing:
        try:
            async with self._sessionmaker() as db:
                await db.connection(execution_options=READ_ONLY)
                read_at = self._clock.time()
                rows = await list_keys(db)
            # Built with the connection back in the pool.
            ring = build_keyring(rows, self._box, self._settings, self._clock)
        except BaseException:
            self._retry_at = self._clock.time() + RETRY_SECONDS
            raise
        else:
            self._ring, self._read_at = ring, read_at
            return ring
        finally:
            self._reloading = None

    async def ring(
        self, max_age: float = RELOAD_SECONDS, *, wait_after: float = math.inf
    ) -> KeyRing:
        """A ring read at most `max_age` seconds ago; while a reload runs (or after one failed,
        for `RETRY_SECONDS`) the current ring, unless it is older than `wait_after`: then wait
        for the reload running, or refuse (503) while none may start."""
        ring, at = self._ring, self._clock.time()
        age = at - self._read_at
        if ring is not None and age <= max_age:
            return ring
        held_back = self._reloading is not None or at < self._retry_at
        if ring is not None and age <= wait_after and held_back:
            return ring
        if self._reloading is None and at < self._retry_at:
            raise ServiceUnavailable()  # the keys cannot be read, and these are too old to use
        return await self.reload()

    async def public_key(self, kid: str) -> PublicKey | None:
        """The key to verify a token of `kid` with, from a ring that sees revocations within
        `REVOKED_WITHIN_SECONDS`; None for a kid not published (unknown, retired or revoked)."""
        ring = await self.ring(RELOAD_SECONDS, wait_after=REVOKED_WITHIN_SECONDS)
        reloading = self._reloading
        if kid not in ring.public and reloading is not None:
            # The kid may be a key the running reload brings (made a moment ago): wait for it
            # rather than start another. If it fails, the kid stays unknown, so refused (the
            # request that started the reload reports the failure).
            try:
                ring = await asyncio.shield(reloading)
            except Exception:
                return None
        return ring.public.get(kid)
