"""WebAuthn challenges waiting for their answer, in Redis (SPEC §7, STYLE §16).

Each options call stores one random 256-bit challenge under a key naming its purpose and what
it is bound to (the user and their login challenge or session; for a passkey login, nothing
but the challenge itself). The answer takes it with GETDEL: consumed atomically on first use,
whatever the verdict, so an assertion or attestation can never be replayed and two racing
answers cannot both find it. Expiry is decided by the service clock; the Redis TTL only
collects the garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass
from typing import Literal

from mfa_service.redis_keys import UserKeys, passkey_key
from mfa_service.services import Services

Purpose = Literal["registration", "challenge", "step_up", "password_reset"]


@dataclass(frozen=True)
class Pending:
    challenge: bytes
    passkey: bool  # a registration that asked for a passkey


def _hash(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


def user_key(svc: Services, user_id: uuid.UUID, purpose: Purpose, binding: str) -> str:
    return UserKeys(svc.settings.redis_prefix, user_id).webauthn(purpose, _hash(binding))


def login_key(svc: Services, challenge: bytes) -> str:
    return passkey_key(svc.settings.redis_prefix, _hash(challenge))


async def put(svc: Services, key: str | None = None, *, passkey: bool = False) -> bytes:
    """A new challenge stored under `key` (None: the passkey-login key of the challenge)."""
    challenge = secrets.token_bytes(32)
    ttl_ms = svc.settings.challenge_ttl * 1000
    expires_ms = int(svc.clock.time() * 1000) + ttl_ms
    value = f"{expires_ms}:{int(passkey)}:{base64.urlsafe_b64encode(challenge).decode()}"
    await svc.redis.set(key or login_key(svc, challenge), value, px=ttl_ms)
    return challenge


async def take(svc: Services, key: str) -> Pending | None:
    """The challenge stored under `key`, removed; None if there is none (used, expired)."""
    raw = await svc.redis.getdel(key)
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    expires_ms, passkey, challenge = text.split(":", 2)
    if int(expires_ms) <= svc.clock.time() * 1000:
        return None
    return Pending(base64.urlsafe_b64decode(challenge), passkey == "1")


def claimed_challenge(client_data_json: str) -> bytes | None:
    """The challenge a response says it answers (unverified: only to find the key to take)."""
    try:
        raw = base64.urlsafe_b64decode(client_data_json + "=" * (-len(client_data_json) % 4))
        challenge = json.loads(raw)["challenge"]
        return base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))
    except (binascii.Error, ValueError, KeyError, TypeError):
        return None
