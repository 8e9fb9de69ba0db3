"""Challenges in Redis: created at login, voided in bulk; attempts are counted by the
factor throttle (`factors.throttle`), which shares these keys.

The challenge token is opaque: AES-GCM (a key derived from the data key) over the user id,
the credentials version the login was decided on, the device the login came from (its
device token's id, or zeros), and 256 random bits. It reveals nothing,
not even the user; the service opens it to find the user's Redis keys (one cluster slot, one
round trip), and a forged or altered token fails to open. Redis holds the challenge under the
SHA-256 of the whole token.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
import struct
import uuid
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mfa_service.errors import ChallengeExpired
from mfa_service.redis_keys import UserKeys
from mfa_service.secretbox import SecretBox
from mfa_service.services import Services

# KEYS: challenge, generation   ARGV: ttl ms, expiry (ms since the epoch, by our clock)
# The challenge is an attempt counter (`limits.attempts`) whose window ends at its expiry.
CREATE = """
local gen = redis.call('GET', KEYS[2])
if gen then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
else
  gen = '0'
end
redis.call('HSET', KEYS[1], 'g', gen, 'n', 0, 'p', 0, 'w', ARGV[2], 'l', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

# KEYS: generation   ARGV: ttl ms
# Bumped, and kept as long as a challenge made before it could live.
REVOKE = """
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""

_AAD = b"mfa-service challenge token v2"
_PAYLOAD = struct.Struct(">16sQ16s32s")  # user id, credentials version, device id, random
_NO_DEVICE = bytes(16)


@dataclass(frozen=True)
class Challenge:
    keys: UserKeys
    token_hash: str  # SHA-256 of the token: what a two-step factor's options are bound to
    key: str  # the challenge's Redis key
    credentials_version: int
    device_id: uuid.UUID | None  # the device token the login sent, if it was valid


@functools.lru_cache(maxsize=4)
def _aead(box: SecretBox) -> AESGCM:
    return AESGCM(box.derive("challenge-token"))  # once per data key, not per request


def _open(box: SecretBox, token: str) -> tuple[uuid.UUID, int, uuid.UUID | None]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        plain = _aead(box).decrypt(raw[:12], raw[12:], _AAD)
        user_bytes, version, device_bytes, _ = _PAYLOAD.unpack(plain)
    except (binascii.Error, ValueError, InvalidTag, struct.error):
        raise ChallengeExpired() from None
    device = None if device_bytes == _NO_DEVICE else uuid.UUID(bytes=device_bytes)
    return uuid.UUID(bytes=user_bytes), version, device


def open_token(box: SecretBox, token: str) -> tuple[uuid.UUID, int]:
    """(user id, credentials version) of a token we made, or ChallengeExpired."""
    user_id, version, _ = _open(box, token)
    return user_id, version


def parse(svc: Services, token: str) -> Challenge:
    """The challenge a token names, or ChallengeExpired for anything that is not ours."""
    return _challenge(svc, token, *_open(svc.box, token))


def _challenge(
    svc: Services, token: str, user_id: uuid.UUID, version: int, device_id: uuid.UUID | None
) -> Challenge:
    keys = UserKeys(svc.settings.redis_prefix, user_id)
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    return Challenge(keys, token_hash, keys.challenge(token_hash), version, device_id)


async def create(
    svc: Services, user_id: uuid.UUID, credentials_version: int, device_id: uuid.UUID | None
) -> tuple[str, Challenge]:
    device = _NO_DEVICE if device_id is None else device_id.bytes
    plain = _PAYLOAD.pack(user_id.bytes, credentials_version, device, secrets.token_bytes(32))
    nonce = secrets.token_bytes(12)
    raw = nonce + _aead(svc.box).encrypt(nonce, plain, _AAD)
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    challenge = _challenge(svc, token, user_id, credentials_version, device_id)
    ttl_ms = svc.settings.challenge_ttl * 1000
    # Expiry is decided by the service clock (the Redis TTL only collects the garbage).
    expires_ms = int(svc.clock.time() * 1000) + ttl_ms
    await svc.scripts.run(
        CREATE, [challenge.key, challenge.keys.challenge_generation], [ttl_ms, expires_ms]
    )
    return token, challenge


async def revoke_all(svc: Services, user_id: uuid.UUID) -> None:
    """Void every pending challenge of the user (password or MFA change)."""
    key = UserKeys(svc.settings.redis_prefix, user_id).challenge_generation
    await svc.scripts.run(REVOKE, [key], [svc.settings.challenge_ttl * 1000])
