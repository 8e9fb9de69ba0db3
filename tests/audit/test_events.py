from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_user,
    running_app,
    settings_for,
    totp_code,
)


async def events(client: httpx.AsyncClient, token: str, **params: Any) -> dict[str, Any]:
    r = await client.get("/users/me/events", headers=bearer(token), params=params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def all_rows(database_url: str) -> list[str]:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT * FROM audit_events"))).all()
    finally:
        await engine.dispose()
    return [" ".join(str(v) for v in row) for row in rows]


async def test_security_events_are_recorded_without_secrets(
    backend: Backend, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend), clock) as client:
        user = await mfa_user(client, clock)  # totp.enabled
        wrong = await client.post(
            "/auth/login", json={"email": user.email, "password": "nope nope"}
        )
        assert wrong.status_code == 401  # login.failed
        token = await challenge(client, user.email)  # login.succeeded
        code = totp_code(user.secret, clock)
        await client.post("/mfa/challenge", json={"challenge_token": token, "code": "000000"})
        ok = await client.post("/mfa/challenge", json={"challenge_token": token, "code": code})
        session = ok.json()  # challenge.failed, challenge.succeeded
        replay = await client.post(
            "/mfa/challenge",
            json={"challenge_token": await challenge(client, user.email), "code": code},
        )
        assert replay.status_code == 401  # totp.replay_refused, challenge.failed
        backup = await client.post(
            "/mfa/challenge",
            json={
                "challenge_token": await challenge(client, user.email),
                "backup_code": user.backup_codes[0],
            },
        )
        assert backup.status_code == 200  # backup_code.used
        clock.advance(30)
        regen = await client.post(
            "/mfa/backup-codes",
            headers=bearer(session["access_token"]),
            json={"code": totp_code(user.secret, clock)},
        )
        assert regen.status_code == 200  # backup_codes.regenerated
        refreshed = await client.post(
            "/auth/refresh", json={"refresh_token": session["refresh_token"]}
        )
        reuse = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
        assert reuse.status_code == 401  # refresh.reuse_detected
        fresh = backup.json()
        clock.advance(30)
        changed = await client.post(
            "/auth/password",
            headers=bearer(fresh["access_token"]),
            json={
                "current_password": PASSWORD,
                "new_password": "another long passphrase",
                "code": totp_code(user.secret, clock),
            },
        )
        assert changed.status_code == 204  # password.changed
        clock.advance(30)
        disabled = await client.request(
            "DELETE",
            "/mfa/totp",
            headers=bearer(fresh["access_token"]),
            json={"password": "another long passphrase", "code": totp_code(user.secret, clock)},
        )
        assert disabled.status_code == 204  # totp.disabled
        page = await events(client, fresh["access_token"], limit=100)
        clock.advance(1)
        assert (
            await client.post("/auth/logout", headers=bearer(fresh["access_token"]))
        ).status_code == 204
        clock.advance(1)
        relogin = await login(client, user.email, "another long passphrase")
        types = [e["type"] for e in (await events(client, relogin["access_token"]))["items"]]
        assert types[0] == "login.succeeded"
        assert "logout" in types

    recorded = {e["type"] for e in page["items"]}
    assert recorded >= {
        "totp.enabled",
        "login.failed",
        "login.succeeded",
        "challenge.failed",
        "challenge.succeeded",
        "totp.replay_refused",
        "backup_code.used",
        "backup_codes.regenerated",
        "refresh.reuse_detected",
        "password.changed",
        "totp.disabled",
    }
    first = page["items"][0]
    assert first["type"] == "totp.disabled"  # newest first
    assert first["ip"] == "203.0.113.7"
    assert first["at"].endswith("Z") or first["at"].endswith("+00:00")
    assert refreshed.status_code == 200

    secrets = [user.secret, PASSWORD, "another long passphrase", code, *user.backup_codes]
    secrets += [session["access_token"], session["refresh_token"], token]
    for row in await all_rows(backend.database_url):
        for secret in secrets:
            assert secret not in row
        assert user.backup_codes[0].replace("-", "") not in row


async def test_lockout_is_recorded(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    for _ in range(10):
        token = await challenge(client, user.email)
        await client.post("/mfa/challenge", json={"challenge_token": token, "code": "000000"})
    types = [e["type"] for e in (await events(client, user.access_token, limit=100))["items"]]
    assert types.count("factor.locked") == 1
    assert types.count("challenge.failed") == 10


async def test_events_paginate_newest_first(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    for _ in range(4):
        clock.advance(1)
        await client.post("/auth/login", json={"email": user.email, "password": "wrong password"})
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await events(client, user.access_token, **params)
        assert len(page["items"]) <= 2
        seen += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    stamps = [e["at"] for e in seen]
    assert stamps == sorted(stamps, reverse=True)
    assert [e["type"] for e in seen].count("login.failed") == 4
    # Walking the pages gives exactly the one big page: nothing skipped, nothing twice.
    assert seen == (await events(client, user.access_token, limit=100))["items"]
    bad = await client.get(
        "/users/me/events", headers=bearer(user.access_token), params={"cursor": "!!"}
    )
    assert bad.status_code == 400
    too_many = await client.get(
        "/users/me/events", headers=bearer(user.access_token), params={"limit": 101}
    )
    assert too_many.status_code == 422


async def test_events_are_private(client: httpx.AsyncClient, clock: FakeClock) -> None:
    alice = await mfa_user(client, clock)
    bob = await mfa_user(client, clock)
    await client.post("/auth/login", json={"email": alice.email, "password": "wrong password"})
    bob_types = [e["type"] for e in (await events(client, bob.access_token))["items"]]
    assert "login.failed" not in bob_types
