from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import (
    Backend,
    FakeClock,
    bearer,
    registered_login,
    running_app,
    settings_for,
)

pytestmark = pytest.mark.redis_cluster


async def test_refresh_rotates_the_token(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["refresh_token"] != tokens["refresh_token"]
    assert rotated["access_token"] != tokens["access_token"]
    me = await client.get("/users/me", headers=bearer(rotated["access_token"]))
    assert me.status_code == 200


async def test_reuse_of_a_rotated_token_revokes_the_family(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    first = (
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).json()
    second = (
        await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    ).json()
    # The thief replays the first refresh token...
    replay = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert replay.status_code == 401
    assert replay.json()["code"] == "invalid_refresh_token"
    # ...and the whole family is gone: the newest refresh token and the access tokens too.
    newest = await client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert newest.status_code == 401
    for access in (tokens, first, second):
        me = await client.get("/users/me", headers=bearer(access["access_token"]))
        assert me.status_code == 401


async def test_concurrent_refreshes_with_one_token_mint_one_and_end_the_family(
    client: httpx.AsyncClient,
) -> None:
    """Ten requests race with one token: one rotates it, the nine others present a used token,
    which ends the session, the winner's new tokens included."""
    _, tokens = await registered_login(client)
    answers = await asyncio.gather(
        *[
            client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
            for _ in range(10)
        ]
    )
    assert sorted(a.status_code for a in answers) == [200] + [401] * 9
    winner = next(a.json() for a in answers if a.status_code == 200)
    again = await client.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]})
    assert again.status_code == 401
    me = await client.get("/users/me", headers=bearer(winner["access_token"]))
    assert me.status_code == 401


async def test_unknown_refresh_token_is_401(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/refresh", json={"refresh_token": "made-up"})
    assert r.status_code == 401
    assert "made-up" not in r.text


async def test_idle_session_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, tokens = await registered_login(client)
    clock.advance(1800 + 1)
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401


async def test_session_ends_after_max_age_even_when_active(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, tokens = await registered_login(client)
    current = tokens
    for _ in range(25):  # refresh every 29 minutes: never idle, but 12 h pass
        clock.advance(29 * 60)
        r = await client.post("/auth/refresh", json={"refresh_token": current["refresh_token"]})
        if r.status_code != 200:
            break
        current = r.json()
    assert r.status_code == 401
    assert clock.offset >= 12 * 3600


async def test_guessing_refresh_tokens_is_limited_per_ip(
    backend: Backend, clock: FakeClock
) -> None:
    """Concurrent made-up tokens: exactly the limit is evaluated; genuine refreshes never count."""
    async with running_app(settings_for(backend, login_ip_max_failures=5), clock) as client:
        _, tokens = await registered_login(client)
        refresh_token = tokens["refresh_token"]
        for _ in range(8):
            r = await client.post("/auth/refresh", json={"refresh_token": refresh_token})
            assert r.status_code == 200, r.text
            refresh_token = r.json()["refresh_token"]
        guesses = await asyncio.gather(
            *(client.post("/auth/refresh", json={"refresh_token": f"guess-{i}"}) for i in range(12))
        )
        statuses = sorted(r.status_code for r in guesses)
        assert statuses == [401] * 5 + [429] * 7, statuses
        r = await client.post("/auth/refresh", json={"refresh_token": refresh_token})
        assert r.status_code == 429
        assert int(r.headers["retry-after"]) > 0
