"""Device tokens (SPEC §8): the owner's device logs in while strangers' guessing has locked
the account, and a device token has its own limit."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    mfa_user,
    new_email,
    register,
    running_app,
    settings_for,
    totp_code,
)

PEER = "203.0.113.7"  # the test client's socket peer: a trusted proxy here
HOME = "198.51.100.10"


def from_ip(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def log_in(
    client: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    device_token: str | None = None,
    ip: str = HOME,
) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": password}
    if device_token is not None:
        body["device_token"] = device_token
    return await client.post("/auth/login", json=body, headers=from_ip(ip))


async def guess_from_many_ips(client: httpx.AsyncClient, email: str, ips: int, each: int) -> None:
    """A distributed guesser: `each` wrong passwords from each of `ips` addresses."""

    async def one(i: int) -> None:
        for _ in range(each):
            r = await log_in(client, email, "wrong password", ip=f"192.0.2.{i + 1}")
            assert r.status_code == 401, r.text

    for start in range(0, ips, 10):
        await asyncio.gather(*(one(i) for i in range(start, min(ips, start + 10))))


def app_for(backend: Backend, clock: FakeClock, **overrides: Any) -> Any:
    settings = settings_for(backend, trusted_proxies=f"{PEER}/32", **overrides)
    return running_app(settings, clock, client_ip=PEER)


@pytest.fixture
async def client(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with app_for(backend, clock) as c:
        yield c


@pytest.fixture
async def quick_lock(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The account-wide limit at 3, so a test locks an account in three guesses."""
    async with app_for(backend, clock, login_account_max_failures=3) as c:
        yield c


async def test_a_distributed_guesser_cannot_lock_the_owners_device_out(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await register(client, email)
    first = await log_in(client, email)
    assert first.status_code == 200
    device = first.json()["device_token"]
    assert len(device) >= 43  # 256 bits

    # 50 addresses, 2 guesses each: no (account, IP) pair is near its 10, the account is at 100.
    await guess_from_many_ips(client, email, ips=50, each=2)

    stranger = await log_in(client, email, ip="192.0.2.200")
    assert stranger.status_code == 429
    assert stranger.json()["code"] == "rate_limited"
    assert int(stranger.headers["Retry-After"]) > 0
    # The owner at home without the device token is a stranger too.
    assert (await log_in(client, email)).status_code == 429

    # With it, from home or from anywhere else, the owner logs in.
    r = await log_in(client, email, device_token=device)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "authenticated"
    rotated = r.json()["device_token"]
    assert rotated != device
    r = await log_in(client, email, device_token=rotated, ip="192.0.2.77")
    assert r.status_code == 200, r.text
    # Each login rotates the token: the one it replaced no longer exempts anyone.
    assert (await log_in(client, email, device_token=device)).status_code == 429


async def test_a_device_token_is_bound_to_its_account(quick_lock: httpx.AsyncClient) -> None:
    client = quick_lock
    mine, theirs = new_email(), new_email()
    await register(client, mine)
    await register(client, theirs)
    device = (await log_in(client, mine)).json()["device_token"]
    for i in range(3):
        await log_in(client, theirs, "wrong password", ip=f"192.0.2.{i + 1}")
    # My device token does nothing for another account.
    r = await log_in(client, theirs, device_token=device)
    assert r.status_code == 429
    # A made-up token is no token.
    r = await log_in(client, theirs, device_token="A" * 43)
    assert r.status_code == 429


async def test_ten_wrong_passwords_spend_a_device_token(quick_lock: httpx.AsyncClient) -> None:
    client = quick_lock
    email = new_email()
    await register(client, email)
    device = (await log_in(client, email)).json()["device_token"]
    for i in range(3):
        await log_in(client, email, "wrong password", ip=f"192.0.2.{i + 1}")
    assert (await log_in(client, email)).status_code == 429  # locked for strangers

    for _ in range(9):
        r = await log_in(client, email, "wrong password", device_token=device)
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_credentials"
    # The right password still works, and the next token carries the device's count on.
    r = await log_in(client, email, device_token=device)
    assert r.status_code == 200, r.text
    device = r.json()["device_token"]
    r = await log_in(client, email, "wrong password", device_token=device)
    assert r.status_code == 401  # the 10th: spent
    r = await log_in(client, email, device_token=device)
    assert r.status_code == 429  # no longer exempt: the account's lock applies


async def test_a_concurrent_burst_gets_exactly_ten_guesses_with_a_device_token(
    quick_lock: httpx.AsyncClient,
) -> None:
    client = quick_lock
    email = new_email()
    await register(client, email)
    device = (await log_in(client, email)).json()["device_token"]
    for i in range(3):
        await log_in(client, email, "wrong password", ip=f"192.0.2.{i + 1}")

    answers = await asyncio.gather(
        *(log_in(client, email, "wrong password", device_token=device) for _ in range(30))
    )
    assert Counter(r.status_code for r in answers) == {401: 10, 429: 20}
    assert (await log_in(client, email, device_token=device)).status_code == 429


async def test_the_challenge_answer_carries_the_device_token(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    r = await log_in(client, user.email)
    assert r.json()["status"] == "mfa_required"
    assert "device_token" not in r.json()  # the password alone is not a login
    answered = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": r.json()["challenge_token"],
            "code": totp_code(user.secret, clock),
        },
    )
    assert answered.status_code == 200, answered.text
    device = answered.json()["device_token"]
    # The next login from this device is exempt, and its challenge answer rotates the token.
    clock.advance(30)
    r = await log_in(client, user.email, device_token=device)
    assert r.json()["status"] == "mfa_required"
    answered = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": r.json()["challenge_token"],
            "code": totp_code(user.secret, clock),
        },
    )
    rotated = answered.json()["device_token"]
    assert rotated != device
    events = await client.get("/users/me/events", headers=bearer(answered.json()["access_token"]))
    assert device not in events.text
    assert rotated not in events.text


async def test_an_address_locked_by_guessing_still_lets_a_device_in(
    backend: Backend, clock: FakeClock
) -> None:
    """A shared address (an office NAT) from which someone guessed at many accounts: the IP
    limit refuses strangers there, not the owner's device."""
    async with app_for(backend, clock, login_ip_max_failures=3) as client:
        email = new_email()
        await register(client, email)
        device = (await log_in(client, email, ip="192.0.2.50")).json()["device_token"]
        for _ in range(3):
            r = await log_in(client, new_email(), "wrong password", ip="192.0.2.99")
            assert r.status_code == 401
        assert (await log_in(client, email, ip="192.0.2.99")).status_code == 429
        r = await log_in(client, email, device_token=device, ip="192.0.2.99")
        assert r.status_code == 200, r.text
