from __future__ import annotations

import httpx
import pytest

from tests.support import FakeClock, bearer, login, registered_login

pytestmark = pytest.mark.redis_cluster


async def test_logout_stays_logged_out(client: httpx.AsyncClient, clock: FakeClock) -> None:
    email, tokens = await registered_login(client)
    other = await login(client, email)
    r = await client.post(
        "/auth/logout",
        headers=bearer(tokens["access_token"]),
        json={"refresh_token": tokens["refresh_token"]},
    )
    assert r.status_code == 204
    for _ in range(3):
        clock.advance(60)
        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401
    assert (
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    # Another session of the same user is untouched.
    assert (await client.get("/users/me", headers=bearer(other["access_token"]))).status_code == 200


async def test_logout_without_body_revokes_the_session(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    assert (
        await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    ).status_code == 204
    assert (
        await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401


async def test_logout_ignores_another_users_refresh_token(client: httpx.AsyncClient) -> None:
    _, mine = await registered_login(client)
    _, theirs = await registered_login(client)
    r = await client.post(
        "/auth/logout",
        headers=bearer(mine["access_token"]),
        json={"refresh_token": theirs["refresh_token"]},
    )
    assert r.status_code == 204
    assert (
        await client.post("/auth/refresh", json={"refresh_token": theirs["refresh_token"]})
    ).status_code == 200


async def test_logout_needs_a_valid_access_token(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post("/auth/logout", headers=bearer(tokens["refresh_token"]))
    assert r.status_code == 401
