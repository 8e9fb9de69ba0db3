"""Challenges in Redis: created at login, voided in bulk; attempts are counted by the
factor throttle (`factors.throttle`), which shares these keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from mfa_service.errors import ChallengeExpired
from mfa_service.redis_keys import UserKeys
from mfa_service.services import Services

# KEYS: challenge, generation   ARGV: ttl ms, expiry (ms since the epoch, by our clock)
CREATE = """
local gen = redis.call('GET', KEYS[2])
if gen then
  redis.call('PEXPIRE', KEYS[2], ARGV[1])
else
  gen = '0'
end
redis.call('HSET', KEYS[1], 'g', gen, 'a', 0, 'e', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
"""


def parse(token: str, prefix: str) -> tuple[UserKeys, str]:
    """The token is `<user id hex>.<256 random bits>`: the user part picks the Redis shard;
    the key holds the SHA-256 of the whole token, so a forged user part finds nothing."""
    user_part, _, _ = token.partition(".")
    try:
        user_id = uuid.UUID(hex=user_part)
    except ValueError:
        raise ChallengeExpired() from None
    return UserKeys(prefix, user_id), hashlib.sha256(token.encode()).hexdigest()


async def create(svc: Services, user_id: uuid.UUID) -> str:
    token = f"{user_id.hex}.{secrets.token_urlsafe(32)}"
    keys, token_hash = parse(token, svc.settings.redis_prefix)
    ttl_ms = svc.settings.challenge_ttl * 1000
    # Expiry is decided by the service clock (the Redis TTL only collects the garbage).
    expires_ms = int(svc.clock.time() * 1000) + ttl_ms
    await svc.redis.register_script(CREATE)(
        keys=[keys.challenge(token_hash), keys.challenge_generation], args=[ttl_ms, expires_ms]
    )
    return token


async def revoke_all(svc: Services, user_id: uuid.UUID) -> None:
    """Void every pending challenge of the user (password or MFA change)."""
    key = UserKeys(svc.settings.redis_prefix, user_id).challenge_generation
    async with svc.redis.pipeline(transaction=True) as pipe:
        pipe.incr(key)
        pipe.pexpire(key, svc.settings.challenge_ttl * 1000)
        await pipe.execute()
