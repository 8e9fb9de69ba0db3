"""The user's sessions: listed, ended one by one, and every logout scope."""

from __future__ import annotations

import uuid

import httpx

from tests.support import FakeClock, bearer, login, registered_login


async def sessions(client: httpx.AsyncClient, access_token: str) -> list[dict[str, object]]:
    r = await client.get("/users/me/sessions", headers=bearer(access_token))
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


async def refresh_works(client: httpx.AsyncClient, tokens: dict[str, str]) -> bool:
    r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    return r.status_code == 200


async def test_two_logins_listed_newest_first_and_one_ended(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    email, first = await registered_login(client)
    clock.advance(5)
    second = await client.post(
        "/auth/login",
        json={"email": email, "password": "correct horse battery staple"},
        headers={"User-Agent": "phone/1.0"},
    )
    assert second.status_code == 200
    tokens = second.json()
    items = await sessions(client, tokens["access_token"])
    assert len(items) == 2
    newest, oldest = items
    assert newest["current"] is True
    assert oldest["current"] is False
    assert newest["user_agent"] == "phone/1.0"
    assert newest["ip"] == "203.0.113.7"
    assert newest["amr"] == ["pwd"]
    assert str(newest["created_at"]) > str(oldest["created_at"])
    # The first session sees itself as current.
    assert [i["current"] for i in await sessions(client, first["access_token"])] == [False, True]

    # last_seen_at follows refreshes.
    clock.advance(120)
    r = await client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    first = r.json()
    items = await sessions(client, tokens["access_token"])
    assert str(items[1]["last_seen_at"]) > str(items[1]["created_at"])

    # The newer session ends the older one: its refresh token and access token stop at once.
    r = await client.delete(
        f"/users/me/sessions/{oldest['id']}", headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 204
    assert not await refresh_works(client, first)
    assert (await client.get("/users/me", headers=bearer(first["access_token"]))).status_code == 401
    assert [i["id"] for i in await sessions(client, tokens["access_token"])] == [newest["id"]]
    # Ending it again, or an unknown id: 404.
    for session_id in (oldest["id"], str(uuid.uuid4())):
        r = await client.delete(
            f"/users/me/sessions/{session_id}", headers=bearer(tokens["access_token"])
        )
        assert r.status_code == 404
        assert r.json()["code"] == "not_found"

    events = await client.get("/users/me/events", headers=bearer(tokens["access_token"]))
    revoked = [e for e in events.json()["items"] if e["type"] == "session.revoked"]
    assert revoked[0]["detail"] == {"session": oldest["id"]}


async def test_another_users_session_is_not_found(client: httpx.AsyncClient) -> None:
    _, mine = await registered_login(client)
    _, theirs = await registered_login(client)
    (their_session,) = await sessions(client, theirs["access_token"])
    r = await client.delete(
        f"/users/me/sessions/{their_session['id']}", headers=bearer(mine["access_token"])
    )
    assert r.status_code == 404
    assert await refresh_works(client, theirs)


async def test_ending_the_current_session_signs_it_out(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    (current,) = await sessions(client, tokens["access_token"])
    r = await client.delete(
        f"/users/me/sessions/{current['id']}", headers=bearer(tokens["access_token"])
    )
    assert r.status_code == 204
    assert (
        await client.get("/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 401


async def test_ended_and_idle_sessions_are_not_listed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    email, old = await registered_login(client)
    clock.advance(600)
    fresh = await login(client, email)
    r = await client.post("/auth/logout", headers=bearer(old["access_token"]))
    assert r.status_code == 204
    assert len(await sessions(client, fresh["access_token"])) == 1
    email, idle = await registered_login(client)
    clock.advance(1801)  # past the idle limit of the first: only the second is live
    live = await login(client, email)
    assert [i["current"] for i in await sessions(client, live["access_token"])] == [True]
    assert not await refresh_works(client, idle)


async def test_logout_scopes(client: httpx.AsyncClient) -> None:
    email, a = await registered_login(client)
    b = await login(client, email)
    c = await login(client, email)
    # others: every other session ends, this one stays.
    r = await client.post(
        "/auth/logout", headers=bearer(a["access_token"]), json={"scope": "others"}
    )
    assert r.status_code == 204
    assert not await refresh_works(client, b)
    assert (await client.get("/users/me", headers=bearer(c["access_token"]))).status_code == 401
    assert (await client.get("/users/me", headers=bearer(a["access_token"]))).status_code == 200
    assert len(await sessions(client, a["access_token"])) == 1

    # global: all of them, this one included.
    d = await login(client, email)
    e = await login(client, email)
    r = await client.post(
        "/auth/logout", headers=bearer(d["access_token"]), json={"scope": "global"}
    )
    assert r.status_code == 204
    for tokens in (d, e):
        assert (
            await client.get("/users/me", headers=bearer(tokens["access_token"]))
        ).status_code == 401
    assert not await refresh_works(client, d)
    assert not await refresh_works(client, e)
    assert (await client.get("/users/me", headers=bearer(a["access_token"]))).status_code == 401

    # local (the default, explicit here) ends just this one.
    f = await login(client, email)
    g = await login(client, email)
    r = await client.post(
        "/auth/logout", headers=bearer(f["access_token"]), json={"scope": "local"}
    )
    assert r.status_code == 204
    assert not await refresh_works(client, f)
    assert await refresh_works(client, g)

    r = await client.post("/auth/logout", headers=bearer(g["access_token"]), json={"scope": "all"})
    assert r.status_code == 422
