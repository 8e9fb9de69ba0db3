from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from mfa_service.redis_client import connect
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    challenge,
    mfa_user,
    new_email,
    register,
    require_shared_redis,
    running_app,
    settings_for,
    totp_code,
)

pytestmark = pytest.mark.redis_cluster

WRONG = "not the password at all"


async def attempt(client: httpx.AsyncClient, email: str, password: str, **headers: str) -> int:
    r = await client.post(
        "/auth/login", json={"email": email, "password": password}, headers=headers
    )
    return r.status_code


async def test_password_guessing_locks_the_account_and_ip_pair_only(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend)
    email = new_email()
    async with (
        running_app(settings, clock, client_ip="198.51.100.1") as attacker,
        running_app(settings, clock, client_ip="192.0.2.50") as owner,
    ):
        await register(attacker, email)
        for _ in range(10):
            assert await attempt(attacker, email, WRONG) == 401
        locked = await attacker.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert locked.status_code == 429
        assert locked.headers["content-type"] == "application/problem+json"
        assert locked.json()["code"] == "rate_limited"
        assert int(locked.headers["retry-after"]) == 900
        # Rotating X-Forwarded-For without a trusted proxy changes nothing.
        for fake in ("10.0.0.1", "10.0.0.2", "192.0.2.50"):
            assert await attempt(attacker, email, PASSWORD, **{"X-Forwarded-For": fake}) == 429
        # The owner, elsewhere, is not locked out.
        assert await attempt(owner, email, PASSWORD) == 200
        clock.advance(600)
        later = await attacker.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert int(later.headers["retry-after"]) == 300
        clock.advance(300)
        assert await attempt(attacker, email, PASSWORD) == 200


async def test_unknown_emails_are_counted_and_answered_alike(
    client: httpx.AsyncClient,
) -> None:
    known, unknown = new_email(), new_email()
    await register(client, known)
    answers: dict[str, list[httpx.Response]] = {known: [], unknown: []}
    for _ in range(11):
        for email in (known, unknown):
            answers[email].append(
                await client.post("/auth/login", json={"email": email, "password": WRONG})
            )
    for a, b in zip(answers[known], answers[unknown], strict=True):
        assert (a.status_code, a.content, a.headers.get("retry-after")) == (
            b.status_code,
            b.content,
            b.headers.get("retry-after"),
        )
    assert [r.status_code for r in answers[known]] == [401] * 10 + [429]


async def test_trusted_proxy_forwarded_for_names_the_client(
    backend: Backend, clock: FakeClock
) -> None:
    require_shared_redis(backend)
    settings = settings_for(backend, trusted_proxies="10.1.0.0/16")
    email = new_email()
    async with running_app(settings, clock, client_ip="10.1.2.3") as proxy:
        await register(proxy, email)
        for _ in range(10):
            r = await attempt(proxy, email, WRONG, **{"X-Forwarded-For": "1.2.3.4, 10.1.9.9"})
            assert r == 401
        # 10.1.9.9 is another trusted hop: the client is 1.2.3.4, now locked...
        assert await attempt(proxy, email, PASSWORD, **{"X-Forwarded-For": "1.2.3.4"}) == 429
        # ...while the same account from another client behind the proxy is not.
        assert await attempt(proxy, email, PASSWORD, **{"X-Forwarded-For": "5.6.7.8"}) == 200
        # The header this proxy does not write is ignored (else a client could write it).
        forwarded = {"Forwarded": 'for=1.2.3.4:4711;proto=https, for="10.1.9.9"'}
        assert await attempt(proxy, email, PASSWORD, **forwarded) == 200
        # A proxy that speaks RFC 7239, on the same Redis: the same client, still locked.
        rfc7239 = settings.model_copy(update={"proxy_header": "forwarded"})
        async with running_app(rfc7239, clock, client_ip="10.1.2.3") as other:
            assert await attempt(other, email, PASSWORD, **forwarded) == 429


async def test_account_limit_over_all_ips(backend: Backend, clock: FakeClock) -> None:
    require_shared_redis(backend)
    settings = settings_for(backend, login_account_max_failures=6, login_max_failures=3)
    email = new_email()
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(running_app(settings, clock, client_ip=ip))
            for ip in ("198.51.100.1", "198.51.100.2", "198.51.100.3")
        ]
        await register(clients[0], email)
        for c in clients[:2]:
            for _ in range(3):
                assert await attempt(c, email, WRONG) == 401
        assert await attempt(clients[2], email, PASSWORD) == 429


async def test_ip_limit_over_all_accounts(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, login_ip_max_failures=5)
    async with (
        running_app(settings, clock, client_ip="198.51.100.9") as c,
        running_app(settings, clock, client_ip="198.51.100.10") as other,
    ):
        for _ in range(5):
            assert await attempt(c, new_email(), WRONG) == 401
        target = new_email()
        await register(c, target)
        assert await attempt(c, target, PASSWORD) == 429
        assert await attempt(other, target, PASSWORD) == 200


async def test_concurrent_guesses_get_no_more_than_the_limit(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    statuses = await asyncio.gather(*[attempt(client, email, WRONG) for _ in range(30)])
    assert statuses.count(401) == 10
    assert statuses.count(429) == 20


async def test_fifty_concurrent_wrong_codes_on_one_challenge(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    right = totp_code(user.secret, clock)
    proofs = [{"code": f"{i:06d}"} for i in range(50) if f"{i:06d}" != right]
    proofs.insert(25, {"code": right})
    answers = await asyncio.gather(
        *[client.post("/mfa/challenge", json={"challenge_token": token, **p}) for p in proofs]
    )
    codes = [a.json()["code"] if a.status_code != 200 else "ok" for a in answers]
    evaluated = [c for c in codes if c in ("invalid_code", "ok")]
    assert len(evaluated) <= 5
    assert set(codes) <= {"invalid_code", "challenge_expired", "ok"}
    assert all(a.status_code in (200, 401) for a in answers)
    if "ok" not in codes:
        # The challenge burned before the right code was looked at; it is not accepted late.
        late = await client.post("/mfa/challenge", json={"challenge_token": token, "code": right})
        assert late.status_code == 401


async def test_login_after_redis_forgot_its_scripts(backend: Backend, clock: FakeClock) -> None:
    """A Redis restart loses loaded scripts: the limiter loads them again, no request fails."""
    if backend.redis_url is None:
        pytest.skip("needs a Redis server")
    async with running_app(settings_for(backend), clock) as client:
        email = new_email()
        await register(client, email)
        r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200
        redis = connect(backend.redis_url)
        try:
            await redis.script_flush()
        finally:
            await redis.aclose()
        for password, status in ((PASSWORD, 200), ("wrong password!", 401), (PASSWORD, 200)):
            r = await client.post("/auth/login", json={"email": email, "password": password})
            assert r.status_code == status, r.text
