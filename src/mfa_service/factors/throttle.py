"""The per-user second-factor limit and the per-challenge attempt limit, in Redis.

Both are counters of the one attempt-limit rule (`limits.attempts`): reserved before the code
is looked at, settled after. One atomic step on each side of the verification:
  begin  — the challenge lives (right generation, not expired); the user is not locked and
           has room for one more attempt; the challenge has room too. The attempt is
           reserved on both.
  finish — a success burns the challenge and clears the user's failures; a failure counts on
           both, locks the user at the limit, and burns the challenge at its limit.

A challenge hash holds the generation it was made in (`g`) and the counter fields, its window
end `w` being its expiry: it never starts a new window, it expires.
"""

from __future__ import annotations

from dataclasses import dataclass

from mfa_service.config import Settings
from mfa_service.errors import ChallengeExpired, RateLimited
from mfa_service.limits.attempts import LIB, AttemptLimiter, retry_after
from mfa_service.redis_keys import UserKeys

# KEYS: factor counter [, challenge, challenge generation]
# ARGV: now, factor limit, factor window ms, challenge limit
BEGIN = (
    LIB
    + """
local now = tonumber(ARGV[1])
if #KEYS == 3 then
  local ch = redis.call('HMGET', KEYS[2], 'g', 'w')
  if not ch[1] then return {'expired', 0, 0} end
  if ch[1] ~= (redis.call('GET', KEYS[3]) or '0') or (tonumber(ch[2]) or 0) <= now then
    redis.call('DEL', KEYS[2])
    return {'expired', 0, 0}
  end
end
local wait, window = admissible(KEYS[1], now, tonumber(ARGV[2]))
if wait > 0 then return {'locked', wait, 0} end
local challenge_window = 0
if #KEYS == 3 then
  local full, w = admissible(KEYS[2], now, tonumber(ARGV[4]))
  if full > 0 then return {'expired', 0, 0} end
  challenge_window = reserve(KEYS[2], now, 0, w)
end
return {'ok', reserve(KEYS[1], now, tonumber(ARGV[3]), window), challenge_window}
"""
)

# KEYS: factor counter [, challenge]
# ARGV: now, 'ok'|'fail'|'release' (unjudged: an error), factor window id, factor limit,
#       window ms, lock ms, challenge window id, challenge limit
FINISH = (
    LIB
    + """
local now, outcome = tonumber(ARGV[1]), ARGV[2]
local ok = outcome == 'ok'
if #KEYS == 2 then
  if outcome == 'release' then
    settle(KEYS[2], now, tonumber(ARGV[7]), true, false, 0, 0, 0)
  elseif ok then
    if redis.call('DEL', KEYS[2]) == 0 then
      -- burned meanwhile: no token, and the reservation is not a failure either
      settle(KEYS[1], now, tonumber(ARGV[3]), true, false, 0, 0, 0)
      return {'expired', 0}
    end
  elseif (tonumber(redis.call('HGET', KEYS[2], 'w')) or 0) > now then
    local c = settle(KEYS[2], now, tonumber(ARGV[7]), false, false, tonumber(ARGV[8]), 0, 0)
    if c[2] == 1 then redis.call('DEL', KEYS[2]) end  -- its last try: burned
  else
    redis.call('DEL', KEYS[2])
  end
end
local r = settle(KEYS[1], now, tonumber(ARGV[3]), outcome ~= 'fail', ok, tonumber(ARGV[4]),
                 tonumber(ARGV[5]), tonumber(ARGV[6]))
return {outcome, r[2]}
"""
)


@dataclass(frozen=True)
class Attempt:
    keys: UserKeys
    challenge_key: str | None
    window: int
    challenge_window: int


class FactorThrottle:
    def __init__(self, limiter: AttemptLimiter, settings: Settings) -> None:
        self._limiter = limiter
        self._settings = settings

    async def begin(self, keys: UserKeys, challenge_key: str | None = None) -> Attempt:
        """Raises RateLimited (locked, or the limit is taken by attempts in flight) or
        ChallengeExpired; else the attempt is reserved."""
        s = self._settings
        redis_keys = [keys.factor]
        if challenge_key is not None:
            redis_keys += [challenge_key, keys.challenge_generation]
        status, value, challenge_window = await self._limiter.scripts.run(
            BEGIN,
            redis_keys,
            [
                self._limiter.now_ms(),
                s.factor_max_failures,
                s.factor_lock_seconds * 1000,
                s.challenge_max_attempts,
            ],
        )
        if status == b"locked":
            raise RateLimited(retry_after=retry_after(value))
        if status == b"expired":
            raise ChallengeExpired()
        return Attempt(keys, challenge_key, int(value), int(challenge_window))

    async def finish(self, attempt: Attempt, ok: bool | None) -> bool:
        """Record the outcome (None: not judged, the reservation is given back); True when
        this failure locked the factor. A success on a challenge burned meanwhile is
        refused."""
        s = self._settings
        redis_keys = [attempt.keys.factor]
        if attempt.challenge_key is not None:
            redis_keys.append(attempt.challenge_key)
        lock_ms = s.factor_lock_seconds * 1000
        status, locked = await self._limiter.scripts.run(
            FINISH,
            redis_keys,
            [
                self._limiter.now_ms(),
                "release" if ok is None else "ok" if ok else "fail",
                attempt.window,
                s.factor_max_failures,
                lock_ms,
                lock_ms,
                attempt.challenge_window,
                s.challenge_max_attempts,
            ],
        )
        if status == b"expired":
            raise ChallengeExpired()
        return bool(locked)
