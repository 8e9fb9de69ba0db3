"""Password-guessing limits, as fixed windows of Redis counters.

  (account, client IP): 10 wrong passwords in 15 min, so a stranger elsewhere cannot lock the
                        owner out; account from every IP: 100; client IP over all accounts: 100.

The account counters are reserved *before* the password is checked (refunded on success), so
a burst of concurrent guesses gets no more evaluations than the limit. Accounts are keyed by
the normalised email, known or not: unknown emails are counted and answered the same way.
Each counter is a hash {n: count, w: window end (ms, service clock)}; "locked" means n has
reached the limit inside the window, until the window ends.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from mfa_service.clock import Clock
from mfa_service.config import Settings
from mfa_service.errors import RateLimited

# KEYS: counters   ARGV: now, window ms, limit for each key in order, reserve (1|0)
# Returns ms until the first full counter's window ends, or 0 when admitted (and reserved).
CHECK = """
local now = tonumber(ARGV[1])
local wait = 0
for i, key in ipairs(KEYS) do
  local c = redis.call('HMGET', key, 'n', 'w')
  local w = tonumber(c[2] or '0')
  if w > now and tonumber(c[1] or '0') >= tonumber(ARGV[2 + i]) then
    wait = math.max(wait, w - now)
  end
end
if wait > 0 or ARGV[#ARGV] == '0' then return wait end
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('HGET', key, 'w') or '0') <= now then
    redis.call('HSET', key, 'n', 1, 'w', now + tonumber(ARGV[2]))
  else
    redis.call('HINCRBY', key, 'n', 1)
  end
  redis.call('PEXPIRE', key, ARGV[2])
end
return 0
"""

# KEYS: counters   ARGV: now, delta (+1: a failure; -1: refund a reservation), window ms
ADD = """
local now = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('HGET', key, 'w') or '0') <= now then
    if tonumber(ARGV[2]) > 0 then
      redis.call('HSET', key, 'n', ARGV[2], 'w', now + tonumber(ARGV[3]))
      redis.call('PEXPIRE', key, ARGV[3])
    end
  else
    redis.call('HINCRBY', key, 'n', ARGV[2])
  end
end
return 1
"""


@dataclass(frozen=True)
class LoginKeys:
    pair: str
    account: str
    ip: str


class LoginLimiter:
    def __init__(self, redis: Redis, settings: Settings, clock: Clock) -> None:
        self._redis = redis
        self._check = redis.register_script(CHECK)
        self._add = redis.register_script(ADD)
        self._settings = settings
        self._clock = clock

    def keys(self, email: str, ip: str) -> LoginKeys:
        # The account's keys share a hash tag (one Redis Cluster shard); the IP has its own.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        base = f"{self._settings.redis_prefix}{{login:{account}}}"
        return LoginKeys(
            pair=f"{base}:ip:{ip}",
            account=f"{base}:all",
            ip=self._ip_key("login", ip),
        )

    def _now(self) -> int:
        return int(self._clock.time() * 1000)

    async def reserve(self, keys: LoginKeys) -> None:
        """Admit one password check, or raise RateLimited; counts it on the account."""
        s = self._settings
        window = s.login_window_seconds * 1000
        now = self._now()
        # Two scripts (the account's keys and the IP's live on different cluster shards) in
        # one round trip. EVALSHA by hand: a pipeline of Script objects asks SCRIPT EXISTS
        # first, a second round trip on every login.
        for _ in range(2):
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.evalsha(
                        self._check.sha, 2, keys.pair, keys.account, now, window,
                        s.login_max_failures, s.login_account_max_failures, 1,
                    )  # fmt: skip
                    pipe.evalsha(
                        self._check.sha, 1, keys.ip, now, window, s.login_ip_max_failures, 0
                    )
                    account_wait, ip_wait = await pipe.execute()
                break
            except NoScriptError:  # Redis restarted or flushed its scripts
                await self._redis.script_load(CHECK)
        else:
            raise NoScriptError("the login limiter's script could not be loaded")
        if account_wait:
            raise RateLimited(retry_after=-(-int(account_wait) // 1000))
        if ip_wait:
            await self._refund(keys)
            raise RateLimited(retry_after=-(-int(ip_wait) // 1000))

    def _ip_key(self, kind: str, ip: str) -> str:
        return f"{self._settings.redis_prefix}{{{kind}-ip:{ip}}}"

    async def reserve_ip(self, kind: str, ip: str) -> None:
        """Admit one guess at `kind` from this client IP and count it, or raise RateLimited.

        Counting before the check holds the limit under concurrent guesses; `refund_ip`
        takes the count back once the attempt proved genuine.
        """
        s = self._settings
        wait = await self._check(
            keys=[self._ip_key(kind, ip)],
            args=[self._now(), s.login_window_seconds * 1000, s.login_ip_max_failures, 1],
        )
        if wait:
            raise RateLimited(retry_after=-(-int(wait) // 1000))

    async def refund_ip(self, kind: str, ip: str) -> None:
        window = self._settings.login_window_seconds * 1000
        await self._add(keys=[self._ip_key(kind, ip)], args=[self._now(), -1, window])

    async def failed(self, keys: LoginKeys) -> None:
        window = self._settings.login_window_seconds * 1000
        await self._add(keys=[keys.ip], args=[self._now(), 1, window])

    async def succeeded(self, keys: LoginKeys) -> None:
        await self._refund(keys)

    async def _refund(self, keys: LoginKeys) -> None:
        window = self._settings.login_window_seconds * 1000
        await self._add(keys=[keys.pair, keys.account], args=[self._now(), -1, window])
