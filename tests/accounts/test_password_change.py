from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    login,
    mfa_user,
    new_email,
    register,
    running_app,
    settings_for,
)

NEW_PASSWORD = "an entirely new passphrase"


async def test_change_password_revokes_other_sessions_only(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    here = await login(client, email)
    elsewhere = await login(client, email)
    r = await client.post(
        "/auth/password",
        headers=bearer(here["access_token"]),
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 204
    assert (await client.get("/users/me", headers=bearer(here["access_token"]))).status_code == 200
    assert (
        await client.get("/users/me", headers=bearer(elsewhere["access_token"]))
    ).status_code == 401
    gone = await client.post("/auth/refresh", json={"refresh_token": elsewhere["refresh_token"]})
    assert gone.status_code == 401
    kept = await client.post("/auth/refresh", json={"refresh_token": here["refresh_token"]})
    assert kept.status_code == 200
    old = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    await login(client, email, NEW_PASSWORD)


async def test_change_password_needs_the_current_one(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    tokens = await login(client, email)
    r = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_credentials"
    await login(client, email)


async def test_change_password_refuses_a_common_one(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    tokens = await login(client, email)
    r = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={"current_password": PASSWORD, "new_password": "password1234"},
    )
    assert r.status_code == 422
    assert r.json()["code"] == "weak_password"


async def test_change_password_needs_an_access_token(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/auth/password", json={"current_password": PASSWORD, "new_password": NEW_PASSWORD}
    )
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")


async def stored_hash(database_url: str, email: str) -> str:
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            row = (
                await conn.execute(
                    text("SELECT password_hash FROM users WHERE email = :e"), {"e": email}
                )
            ).one()
    finally:
        await engine.dispose()
    return str(row[0])


async def test_hash_is_upgraded_on_login_when_parameters_rise(backend: Backend) -> None:
    email = new_email()
    async with running_app(settings_for(backend)) as client:
        await register(client, email)
    before = await stored_hash(backend.database_url, email)
    assert before.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    async with running_app(settings_for(backend, argon2_time_cost=3)) as client:
        await login(client, email)
    after = await stored_hash(backend.database_url, email)
    assert after.startswith("$argon2id$v=19$m=19456,t=3,p=1$")
    async with running_app(settings_for(backend, argon2_time_cost=3)) as client:
        await login(client, email)


async def test_hash_is_upgraded_on_an_mfa_login_too(backend: Backend) -> None:
    clock = FakeClock()
    async with running_app(settings_for(backend), clock) as client:
        user = await mfa_user(client, clock)
    before = await stored_hash(backend.database_url, user.email)
    assert before.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    async with running_app(settings_for(backend, argon2_time_cost=3), clock) as client:
        assert (await login(client, user.email))["status"] == "mfa_required"
    after = await stored_hash(backend.database_url, user.email)
    assert after.startswith("$argon2id$v=19$m=19456,t=3,p=1$")
