"""Guessing limits keyed by account and client IP, on the one attempt-limit rule
(`limits.attempts`):

  passwords  (account, client IP): 10 wrong in 15 min, so a stranger elsewhere cannot lock
             the owner out; the account from every IP: 100; the client IP over all accounts:
             100. Unknown emails are counted and answered like known ones.
  device     a device token (SPEC §8) replaces the three password counters for its logins:
             device_max_failures wrong passwords over the token's life spend it.
  per IP     refresh-token and introspection-client guesses: 100 per 15 min each.
  register   20 attempts per IP per hour, every attempt counted whatever its answer.
  passkeys   passkey-login options: 300 calls per IP per 15 min, each counted; wrong
             passkey assertions: 100 per IP per 15 min.

Client IPs are counted by `Client.ip_bucket`: IPv6 per /64, which one subscriber holds.
Each limit is reserved before the secret is checked and settled after, so concurrent guesses
get no more evaluations than the limit; a genuine secret gives its reservation back.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass

from mfa_service.config import Settings
from mfa_service.errors import RateLimited
from mfa_service.limits.attempts import AttemptLimiter, Limit, Reservation, retry_after


@dataclass(frozen=True)
class PasswordAttempt:
    account: Reservation  # the (account, IP) pair and the account: one cluster slot
    ip: Reservation


class LoginLimiter:
    def __init__(self, limiter: AttemptLimiter, settings: Settings) -> None:
        self._limiter = limiter
        self._settings = settings

    def _account_base(self, email: str) -> str:
        # The account's keys share a hash tag (one Redis Cluster shard); the IP has its own.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        return f"{self._settings.redis_prefix}{{login:{account}}}"

    def _account_limits(self, email: str, ip_bucket: str) -> tuple[Limit, Limit]:
        s = self._settings
        window = s.login_window_seconds * 1000
        base = self._account_base(email)
        return (
            Limit(f"{base}:ip:{ip_bucket}", s.login_max_failures, window),
            Limit(f"{base}:all", s.login_account_max_failures, window),
        )

    def _ip_limit(self, kind: str, ip_bucket: str) -> Limit:
        s = self._settings
        key = f"{s.redis_prefix}{{{kind}-ip:{ip_bucket}}}"
        return Limit(key, s.login_ip_max_failures, s.login_window_seconds * 1000)

    async def clear_account(self, email: str) -> int:
        """An operator's unlock (`mfa-service users unlock`): the account's password counters
        (from every IP, and from all) are gone; how many there were. The per-IP counters over
        all accounts stay: they are about the client, not this account."""
        redis = self._limiter.scripts.redis
        # One hash tag: every key is on one shard, which SCAN (each primary) finds.
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self._account_base(email)) + ":*"
        keys = [key async for key in redis.scan_iter(match=pattern, count=500)]
        for key in keys:  # one by one: a cluster client refuses a multi-key DEL it has to split
            await redis.delete(key)
        return len(keys)

    async def reserve_password(self, email: str, ip_bucket: str) -> PasswordAttempt:
        """Admit one password check on all three counters, or raise RateLimited."""
        limiter = self._limiter
        account = self._account_limits(email, ip_bucket)
        ip = (self._ip_limit("login", ip_bucket),)
        now = limiter.now_ms()
        # Two slots, so two scripts, in one round trip.
        account_result, ip_result = await limiter.scripts.run_many(
            [limiter.reserve_call(account, now), limiter.reserve_call(ip, now)]
        )
        refused = [r[0] for r in (account_result, ip_result) if r[0]]
        if refused:
            admitted = [
                limiter.admitted(limits, result)
                for limits, result in ((account, account_result), (ip, ip_result))
                if not result[0]
            ]
            if admitted:
                await limiter.release(*admitted)
            raise RateLimited(retry_after=retry_after(max(refused)))
        return PasswordAttempt(
            limiter.admitted(account, account_result), limiter.admitted(ip, ip_result)
        )

    async def settle_password(self, attempt: PasswordAttempt, ok: bool | None) -> None:
        """The verdict on a reserved password check (None: not checked at all)."""
        limiter = self._limiter
        now = limiter.now_ms()
        outcome = "release" if ok is None else "ok" if ok else "fail"
        await limiter.scripts.run_many(
            [
                limiter.settle_call(attempt.account, now, outcome),
                limiter.settle_call(attempt.ip, now, outcome),
            ]
        )

    def _device_limit(self, device_id: uuid.UUID) -> Limit:
        s = self._settings
        window = s.device_token_days * 86_400_000  # the token's life: failures never expire
        return Limit(f"{s.redis_prefix}{{device:{device_id.hex}}}", s.device_max_failures, window)

    async def reserve_device(self, device_id: uuid.UUID) -> Reservation:
        """Admit one password check on a device token's own counter, or RateLimited."""
        return await self._limiter.reserve(self._device_limit(device_id))

    async def settle_device(self, reservation: Reservation, ok: bool | None) -> bool:
        """The verdict (None: not checked at all); True when this failure spent the token."""
        if ok is None:
            await self._limiter.release(reservation)
            return False
        return await self._limiter.settle(reservation, ok)

    async def reserve_ip(self, kind: str, ip_bucket: str) -> Reservation:
        """Admit one guess at `kind` (refresh, introspect) from this client, or RateLimited."""
        return await self._limiter.reserve(self._ip_limit(kind, ip_bucket))

    async def settle(self, reservation: Reservation, ok: bool) -> None:
        await self._limiter.settle(reservation, ok)

    async def release(self, reservation: Reservation) -> None:
        """Give back a guess that was never judged (a backing service failed)."""
        await self._limiter.release(reservation)

    async def count_passkey_options(self, ip_bucket: str) -> None:
        """Count a passkey-login options call (each stores a challenge), or RateLimited."""
        s = self._settings
        key = f"{s.redis_prefix}{{passkey-options-ip:{ip_bucket}}}"
        window = s.login_window_seconds * 1000
        await self._limiter.reserve(Limit(key, s.passkey_options_ip_max, window))

    async def count_registration(self, ip_bucket: str) -> None:
        """Count a registration attempt, whatever it turns out to be, or RateLimited. Never
        settled: the reservation is the count, until the window ends."""
        s = self._settings
        key = f"{s.redis_prefix}{{register-ip:{ip_bucket}}}"
        await self._limiter.reserve(Limit(key, s.register_ip_max, s.register_window_seconds * 1000))

    async def count(self, kind: str, subject: str, limit: int, window_seconds: int) -> None:
        """Count one request of `kind` for `subject` (a client IP bucket, an account hash),
        whatever its answer, or RateLimited: like registrations, never settled."""
        key = f"{self._settings.redis_prefix}{{{kind}:{subject}}}"
        await self._limiter.reserve(Limit(key, limit, window_seconds * 1000))
