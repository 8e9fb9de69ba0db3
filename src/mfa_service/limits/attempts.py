"""Attempt limits: the one reserve → judge → settle primitive behind every limit.

Every limit (second factor per user, attempts per challenge, wrong passwords per account and
IP, per account, per IP, registrations per IP, refresh-token and introspection-client guesses
per IP) is a counter in a Redis hash:

    n  failures settled in the current window     w  window end (ms, service clock)
    p  attempts admitted and still being judged   l  locked until (ms)

reserve — admit an attempt only while n + p < limit, and count it in p at once: an attempt
          being judged counts as a failure for every later one, so N concurrent guesses,
          across connections, workers and instances, get at most `limit` evaluations.
settle  — the judged attempt leaves p; a failure adds to n, and the failure that reaches the
          limit locks the counter (for `lock` ms, or to the end of the window); a success adds
          nothing, and may clear n.

A reservation remembers its window: one settled after the window rolled over (or after a lock
restarted it) no longer touches p, which the new window reset. So an attempt whose request
died counts as a failure until its window ends, and never longer.

The Lua functions below are the only copy of this rule; the scripts of each limit (here, and
the challenge-aware ones in `factors.throttle`) are built from them.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

from mfa_service.clock import Clock
from mfa_service.errors import RateLimited
from mfa_service.redis_client import RedisClient

LIB = """
-- state(key): n, p, w, l, as numbers (0 for a missing key or field)
local function state(key)
  local c = redis.call('HMGET', key, 'n', 'p', 'w', 'l')
  return tonumber(c[1]) or 0, tonumber(c[2]) or 0, tonumber(c[3]) or 0, tonumber(c[4]) or 0
end

-- admissible(key, now, limit): 0, or ms to wait (locked, or full); and the window end read
local function admissible(key, now, limit)
  local n, p, w, l = state(key)
  if l > now then return l - now, w end
  if w > now and n + p >= limit then return w - now, w end
  return 0, w
end

-- reserve(key, now, window, w): count one attempt in flight, `w` being the window end that
-- admissible read; returns the window's id (its end)
local function reserve(key, now, window, w)
  if w <= now then
    w = now + window
    redis.call('HSET', key, 'n', 0, 'p', 1, 'w', w, 'l', 0)
    redis.call('PEXPIRE', key, window)
  else
    redis.call('HINCRBY', key, 'p', 1)
  end
  return w
end

-- settle(key, now, wid, ok, clear, limit, window, lock): the attempt reserved in window
-- `wid` was judged. Returns the failures in the window, and 1 when this one locked it.
local function settle(key, now, wid, ok, clear, limit, window, lock)
  local n, p, w, l = state(key)
  if w == wid and p > 0 then redis.call('HINCRBY', key, 'p', -1) end
  if ok then
    if clear and w > now and n > 0 then redis.call('HSET', key, 'n', 0) end
    return {0, 0}
  end
  if w <= now then
    w, l = now + window, 0
    redis.call('HSET', key, 'n', 0, 'p', 0, 'w', w, 'l', 0)
    redis.call('PEXPIRE', key, window)
  end
  n = redis.call('HINCRBY', key, 'n', 1)
  if n < limit or l > now then return {n, 0} end
  -- Locked: until the window ends, or for `lock` ms with a new window after it.
  local until_ = w
  if lock > 0 then until_ = now + lock end
  redis.call('HSET', key, 'l', until_, 'w', until_)
  redis.call('PEXPIRE', key, until_ - now)
  return {n, 1}
end
"""

# KEYS: counters   ARGV: now, then (limit, window) per key
# Every counter admits the attempt, or none is touched. Returns {wait} or {0, wid per key}.
RESERVE = (
    LIB
    + """
local now = tonumber(ARGV[1])
local wait, windows = 0, {}
for i, key in ipairs(KEYS) do
  local w
  w, windows[i] = admissible(key, now, tonumber(ARGV[2 * i]))
  wait = math.max(wait, w)
end
if wait > 0 then return {wait} end
local out = {0}
for i, key in ipairs(KEYS) do
  out[i + 1] = reserve(key, now, tonumber(ARGV[2 * i + 1]), windows[i])
end
return out
"""
)

# KEYS: counters   ARGV: now, outcome ('ok'|'fail'|'release'), clear (1|0),
#                        then (wid, limit, window, lock) per key
# 'release' gives the reservation back without judging anything (e.g. the hasher was full).
# Returns {locked (1|0) of the first key}.
SETTLE = (
    LIB
    + """
local now, outcome = tonumber(ARGV[1]), ARGV[2]
local locked = 0
for i, key in ipairs(KEYS) do
  local a = 4 * i
  local wid, limit = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local window, lock = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local r = settle(key, now, wid, outcome ~= 'fail', outcome == 'ok' and ARGV[3] == '1',
                   limit, window, lock)
  if i == 1 then locked = r[2] end
end
return {locked}
"""
)


@dataclass(frozen=True)
class Limit:
    """One counter: `limit` failures (in flight included) per `window` ms; the failure that
    reaches the limit locks it for `lock` ms (0: until the window ends)."""

    key: str
    limit: int
    window_ms: int
    lock_ms: int = 0


@dataclass(frozen=True)
class Reservation:
    limits: tuple[Limit, ...]
    windows: tuple[int, ...]


def retry_after(wait_ms: int) -> int:
    return max(1, -(-int(wait_ms) // 1000))


Call = tuple[str, Sequence[str], Sequence[int | str]]  # script text, keys, args


class Scripts:
    """Lua scripts run by EVALSHA. A server that does not know one (restarted, flushed, or a
    cluster replica that just took over) gets it by EVAL of that call: the node that answers
    is the one that loads it, and a call runs once, whatever its neighbours did."""

    def __init__(self, redis: RedisClient) -> None:
        self.redis = redis
        self._shas: dict[str, str] = {}

    def _sha(self, text: str) -> str:
        if text not in self._shas:
            self._shas[text] = hashlib.sha1(text.encode()).hexdigest()
        return self._shas[text]

    async def run(self, text: str, keys: Sequence[str], args: Sequence[int | str]) -> list[Any]:
        """One script (its keys in one cluster slot)."""
        try:
            result: list[Any] = await self.redis.evalsha(self._sha(text), len(keys), *keys, *args)
        except NoScriptError:
            result = await self.redis.eval(text, len(keys), *keys, *args)
        return result

    async def run_many(self, calls: Sequence[Call]) -> list[list[Any]]:
        """Several scripts, each on keys of one slot, the slots differing, in one round trip:
        a pipeline on one server; on a cluster, one command per call at once (they go to
        different nodes; redis-py's cluster pipelines refuse EVALSHA)."""
        if isinstance(self.redis, RedisCluster):
            answers = await asyncio.gather(
                *(self.run(*call) for call in calls), return_exceptions=True
            )
        else:
            async with self.redis.pipeline(transaction=False) as pipe:
                for text, keys, args in calls:
                    pipe.evalsha(self._sha(text), len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            answers = [
                # Only the calls refused with NOSCRIPT did not run: the others must not twice.
                await self.redis.eval(text, len(keys), *keys, *args)
                if isinstance(answer, NoScriptError)
                else answer
                for (text, keys, args), answer in zip(calls, answers, strict=True)
            ]
        results: list[list[Any]] = []
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer
            results.append(answer)
        return results


class AttemptLimiter:
    """reserve → judge → settle over one or more counters, as one atomic step each."""

    def __init__(self, redis: RedisClient, clock: Clock) -> None:
        self.scripts = Scripts(redis)
        self._clock = clock

    def now_ms(self) -> int:
        return int(self._clock.time() * 1000)

    @staticmethod
    def reserve_call(limits: Sequence[Limit], now: int) -> tuple[str, list[str], list[int | str]]:
        args: list[int | str] = [now]
        for limit in limits:
            args += [limit.limit, limit.window_ms]
        return RESERVE, [limit.key for limit in limits], args

    @staticmethod
    def settle_call(
        reservation: Reservation, now: int, outcome: str, clear: bool = False
    ) -> tuple[str, list[str], list[int | str]]:
        args: list[int | str] = [now, outcome, int(clear)]
        for limit, wid in zip(reservation.limits, reservation.windows, strict=True):
            args += [wid, limit.limit, limit.window_ms, limit.lock_ms]
        return SETTLE, [limit.key for limit in reservation.limits], args

    @staticmethod
    def admitted(limits: Sequence[Limit], result: Sequence[int]) -> Reservation:
        """The reservation, or RateLimited with the wait the script answered."""
        if result[0]:
            raise RateLimited(retry_after=retry_after(result[0]))
        return Reservation(tuple(limits), tuple(int(w) for w in result[1:]))

    async def reserve(self, *limits: Limit) -> Reservation:
        """Admit one attempt on every counter (all share a cluster slot), or RateLimited."""
        result = await self.scripts.run(*self.reserve_call(limits, self.now_ms()))
        return self.admitted(limits, result)

    async def settle(self, reservation: Reservation, ok: bool, *, clear: bool = False) -> bool:
        """Record the verdict; True when this failure locked the first counter."""
        outcome = "ok" if ok else "fail"
        (locked,) = await self.scripts.run(
            *self.settle_call(reservation, self.now_ms(), outcome, clear)
        )
        return bool(locked)

    async def release(self, *reservations: Reservation) -> None:
        """Give reservations back unjudged (nothing was checked: an overloaded hasher)."""
        now = self.now_ms()
        await self.scripts.run_many([self.settle_call(r, now, "release") for r in reservations])
