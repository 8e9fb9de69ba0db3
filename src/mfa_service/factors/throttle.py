"""The per-user second-factor throttle and the per-challenge attempt count, in Redis.

Two atomic steps around each verification:
  begin  — may this user try now? (not locked; the challenge lives and has attempts left);
           the attempt is counted here, before the code is looked at, so a burst of
           concurrent guesses cannot get more evaluations than the limit.
  finish — a success burns the challenge and clears the failure count; a failure adds to the
           user's count (locking at the limit) and burns a challenge that used its last try.

Times are milliseconds from the service clock, passed in, so every worker and every test
agrees on them; Redis TTLs only collect what is left over.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from mfa_service.clock import Clock
from mfa_service.config import Settings
from mfa_service.errors import ChallengeExpired, RateLimited
from mfa_service.redis_keys import UserKeys

# KEYS: factor state [, challenge, challenge generation]
# ARGV: now, max attempts per challenge
BEGIN = """
local now = tonumber(ARGV[1])
if #KEYS == 3 then
  local ch = redis.call('HMGET', KEYS[2], 'g', 'e')
  if not ch[1] then return {'expired', 0} end
  local gen = redis.call('GET', KEYS[3]) or '0'
  if ch[1] ~= gen or tonumber(ch[2]) <= now then
    redis.call('DEL', KEYS[2])
    return {'expired', 0}
  end
end
local locked_until = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if locked_until > now then return {'locked', locked_until - now} end
if #KEYS == 3 then
  local attempt = redis.call('HINCRBY', KEYS[2], 'a', 1)
  if attempt > tonumber(ARGV[2]) then
    redis.call('DEL', KEYS[2])
    return {'expired', 0}
  end
  return {'ok', attempt}
end
return {'ok', 0}
"""

# KEYS: factor state [, challenge]
# ARGV: now, 'ok'|'fail', max failures, window ms, lock ms, max attempts, this attempt
FINISH = """
local now = tonumber(ARGV[1])
if ARGV[2] == 'ok' then
  redis.call('HDEL', KEYS[1], 'n', 'w')
  if #KEYS == 2 and redis.call('DEL', KEYS[2]) == 0 then return {'expired', 0} end
  return {'ok', 0}
end
local window, lock = tonumber(ARGV[4]), tonumber(ARGV[5])
local failures
if tonumber(redis.call('HGET', KEYS[1], 'w') or '0') <= now then
  redis.call('HSET', KEYS[1], 'n', 1, 'w', now + window)
  failures = 1
else
  failures = redis.call('HINCRBY', KEYS[1], 'n', 1)
end
if failures >= tonumber(ARGV[3]) then
  redis.call('HSET', KEYS[1], 'l', now + lock, 'n', 0, 'w', 0)
end
redis.call('PEXPIRE', KEYS[1], math.max(window, lock))
if #KEYS == 2 and tonumber(ARGV[7]) >= tonumber(ARGV[6]) then redis.call('DEL', KEYS[2]) end
return {'fail', failures}
"""


@dataclass(frozen=True)
class Attempt:
    keys: UserKeys
    challenge_key: str | None
    number: int


class FactorThrottle:
    def __init__(self, redis: Redis, settings: Settings, clock: Clock) -> None:
        self._begin = redis.register_script(BEGIN)
        self._finish = redis.register_script(FINISH)
        self._settings = settings
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    async def begin(self, keys: UserKeys, challenge_key: str | None = None) -> Attempt:
        """Raises RateLimited (locked) or ChallengeExpired; else the attempt is counted."""
        redis_keys = [keys.factor]
        if challenge_key is not None:
            redis_keys += [challenge_key, keys.challenge_generation]
        status, value = await self._begin(
            keys=redis_keys, args=[self._now_ms(), self._settings.challenge_max_attempts]
        )
        if status == b"locked":
            raise RateLimited(retry_after=-(-int(value) // 1000))
        if status == b"expired":
            raise ChallengeExpired()
        return Attempt(keys, challenge_key, int(value))

    async def finish(self, attempt: Attempt, ok: bool) -> bool:
        """Record the outcome; True when this failure locked the factor. A success on a
        challenge burned meanwhile is refused."""
        s = self._settings
        redis_keys = [attempt.keys.factor]
        if attempt.challenge_key is not None:
            redis_keys.append(attempt.challenge_key)
        window_ms = lock_ms = s.factor_lock_seconds * 1000
        status, failures = await self._finish(
            keys=redis_keys,
            args=[
                self._now_ms(),
                "ok" if ok else "fail",
                s.factor_max_failures,
                window_ms,
                lock_ms,
                s.challenge_max_attempts,
                attempt.number,
            ],
        )
        if status == b"expired":
            raise ChallengeExpired()
        return not ok and int(failures) >= s.factor_max_failures
