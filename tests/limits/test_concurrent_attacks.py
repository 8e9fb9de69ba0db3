"""Every limit holds under concurrency: N concurrent guesses get exactly the limit's number of
evaluations, the rest 429 (SPEC §4). A 401 `invalid_code` / `invalid_credentials` is an
evaluated guess; a 429 was refused before anything was checked."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pyotp
import pytest

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    mfa_user,
    new_email,
    register,
    require_shared_redis,
    running_app,
    settings_for,
    totp_code,
    unreachable_redis_url,
)

pytestmark = pytest.mark.redis_cluster

WRONG = "not the password at all"


def wrong_codes(secret: str, clock: FakeClock, count: int) -> list[str]:
    """Codes that no step within the accepted window (±1) matches."""
    valid = {pyotp.TOTP(secret).at(clock.time() + 30 * s) for s in (-1, 0, 1)}
    return [c for c in (f"{i:06d}" for i in range(count + 3)) if c not in valid][:count]


def codes_of(answers: list[httpx.Response]) -> list[tuple[int, str]]:
    return sorted((a.status_code, a.json()["code"]) for a in answers)


async def test_forty_concurrent_wrong_codes_over_eight_challenges_get_the_limit_judged(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    tokens = [await challenge(client, user.email) for _ in range(8)]
    guesses = wrong_codes(user.secret, clock, 40)
    answers = await asyncio.gather(
        *(
            client.post("/mfa/challenge", json={"challenge_token": tokens[i % 8], "code": code})
            for i, code in enumerate(guesses)
        )
    )
    # The user's limit is 10: exactly 10 codes were looked at, 30 refused unjudged.
    assert codes_of(answers) == [(401, "invalid_code")] * 10 + [(429, "rate_limited")] * 30
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 429)
    # The right code after the limit: no token, on a new challenge as on an old one.
    right = totp_code(user.secret, clock)
    for token in (tokens[0], await challenge(client, user.email)):
        r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": right})
        assert r.status_code == 429, r.text
        assert "access_token" not in r.text
    events = await client.get("/users/me/events?limit=100", headers=bearer(user.access_token))
    types = [e["type"] for e in events.json()["items"]]
    assert types.count("challenge.failed") == 10
    assert types.count("factor.locked") == 1
    assert "challenge.succeeded" not in types


async def test_concurrent_wrong_codes_on_one_challenge_get_its_five(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    guesses = wrong_codes(user.secret, clock, 12)
    answers = await asyncio.gather(
        *(
            client.post("/mfa/challenge", json={"challenge_token": token, "code": c})
            for c in guesses
        )
    )
    assert codes_of(answers) == [(401, "challenge_expired")] * 7 + [(401, "invalid_code")] * 5
    # Burned: the right code finds no challenge.
    right = totp_code(user.secret, clock)
    r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": right})
    assert r.json()["code"] == "challenge_expired"


async def test_forty_concurrent_wrong_passwords_from_one_ip(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend, login_ip_max_failures=5)
    async with running_app(settings, clock, client_ip="198.51.100.77") as attacker:
        victims = [new_email() for _ in range(40)]  # unknown emails: counted like known ones
        answers = await asyncio.gather(
            *(attacker.post("/auth/login", json={"email": e, "password": WRONG}) for e in victims)
        )
        assert (
            codes_of(answers) == [(401, "invalid_credentials")] * 5 + [(429, "rate_limited")] * 35
        )
        # The right password of a real account from that IP: refused too, unjudged.
        email = new_email()
        async with running_app(settings, clock, client_ip="192.0.2.9") as elsewhere:
            await register(elsewhere, email)
            r = await attacker.post("/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 429
            ok = await elsewhere.post("/auth/login", json={"email": email, "password": PASSWORD})
            assert ok.status_code == 200


async def test_forty_concurrent_wrong_passwords_on_one_account(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend)
    email = new_email()
    async with running_app(settings, clock, client_ip="198.51.100.78") as attacker:
        await register(attacker, email)
        answers = await asyncio.gather(
            *(
                attacker.post("/auth/login", json={"email": email, "password": WRONG})
                for _ in range(40)
            )
        )
        assert (
            codes_of(answers) == [(401, "invalid_credentials")] * 10 + [(429, "rate_limited")] * 30
        )


async def test_an_ipv6_client_is_counted_per_64(backend: Backend, clock: FakeClock) -> None:
    require_shared_redis(backend)
    settings = settings_for(backend, login_max_failures=3)
    email = new_email()
    async with contextlib.AsyncExitStack() as stack:
        one, same_64, other_64 = [
            await stack.enter_async_context(running_app(settings, clock, client_ip=ip))
            for ip in ("2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:3::1")
        ]
        await register(one, email)
        for client in (one, same_64, one):  # addresses of one /64 add up
            r = await client.post("/auth/login", json={"email": email, "password": WRONG})
            assert r.status_code == 401
        for client in (one, same_64):
            r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 429
        r = await other_64.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200


async def signup(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/auth/register", json={"email": email, "password": password})


async def test_registration_is_limited_per_ip_whatever_the_answers(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend, register_ip_max=3)
    taken = new_email()
    async with (
        running_app(settings, clock, client_ip="198.51.100.90") as spammer,
        running_app(settings, clock, client_ip="198.51.100.91") as other,
    ):
        assert (await signup(spammer, taken)).status_code == 201
        assert (await signup(spammer, taken)).status_code == 409
        assert (await signup(spammer, new_email(), "password")).status_code == 422
        # Three attempts, whatever their answers: the fourth is refused before anything.
        r = await signup(spammer, taken)
        assert r.status_code == 429
        assert r.json()["code"] == "rate_limited"
        assert int(r.headers["retry-after"]) == 3600
        assert (await signup(other, new_email())).status_code == 201
        clock.advance(3600)
        assert (await signup(spammer, new_email())).status_code == 201


async def test_concurrent_registrations_get_the_limit(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, register_ip_max=5)
    async with running_app(settings, clock, client_ip="198.51.100.92") as spammer:
        answers = await asyncio.gather(*(signup(spammer, new_email()) for _ in range(20)))
        assert sorted(a.status_code for a in answers) == [201] * 5 + [429] * 15


async def test_registration_with_redis_down_is_refused(backend: Backend, clock: FakeClock) -> None:
    if backend.redis_url is None:
        return  # the in-process emulation cannot be down
    settings = settings_for(backend, redis_url=unreachable_redis_url(backend))
    email = new_email()
    async with running_app(settings, clock) as client:
        r = await signup(client, email)
        assert r.status_code == 503
        assert r.json()["code"] == "service_unavailable"
    async with running_app(settings_for(backend), clock) as client:
        # Nothing was created: the email is still free.
        assert (await signup(client, email)).status_code == 201
