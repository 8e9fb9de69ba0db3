"""No session outlives a password or MFA change, not even one a login still in flight makes
(SPEC §3); tokens end with their session; the challenge token names nobody."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest

from mfa_service.accounts.passwords import PasswordHasher
from mfa_service.config import Settings
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_user,
    new_email,
    register,
    serving,
    settings_for,
    totp_code,
)

pytestmark = pytest.mark.redis_cluster


class HeldHasher(PasswordHasher):
    """The service's hasher, except that once armed, the next password check is held after
    it ran until the test lets it go: a login in flight across a change, forced without
    sleeping anywhere."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.armed = False
        self.holding = asyncio.Event()
        self.go = asyncio.Event()

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        result = await super().verify(password, password_hash)
        if self.armed:
            self.armed = False
            self.holding.set()
            await self.go.wait()
        return result


async def login_held_across(
    client: httpx.AsyncClient, hasher: HeldHasher, email: str, password: str, change: Any
) -> httpx.Response:
    """A login whose password check has run when `change()` answers; its answer after."""
    hasher.armed = True
    in_flight = asyncio.create_task(
        client.post("/auth/login", json={"email": email, "password": password})
    )
    await hasher.holding.wait()
    await change()
    hasher.go.set()
    return await in_flight


async def assert_nothing_works(client: httpx.AsyncClient, answer: httpx.Response) -> None:
    """A login decided before a change and answered after: whatever it says, nothing works."""
    assert answer.status_code in (200, 401), answer.text
    tokens = answer.json()
    if answer.status_code == 200 and "access_token" in tokens:
        me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 401, me.text
        r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 401, r.text


@dataclass
class Owner:
    client: httpx.AsyncClient
    hasher: HeldHasher
    email: str
    auth: dict[str, str]  # the owner's own session, which makes the change


@pytest.fixture
async def owner(backend: Backend, clock: FakeClock) -> AsyncIterator[Owner]:
    """A signed-in user of an app whose password checks the test can hold."""
    settings = settings_for(backend)
    async with serving(settings, clock) as (app, client):
        hasher = HeldHasher(settings)
        app.state.services.hasher = hasher
        email = new_email()
        await register(client, email)
        try:
            yield Owner(client, hasher, email, bearer((await login(client, email))["access_token"]))
        finally:
            hasher.close()


async def test_a_login_in_flight_does_not_survive_enabling_totp(
    owner: Owner, clock: FakeClock
) -> None:
    client = owner.client
    secret = (await client.post("/mfa/totp/setup", headers=owner.auth)).json()["secret"]

    async def enable() -> None:
        code = totp_code(secret, clock)
        r = await client.post("/mfa/totp/confirm", headers=owner.auth, json={"code": code})
        assert r.status_code == 200, r.text

    attacker = await login_held_across(client, owner.hasher, owner.email, PASSWORD, enable)
    await assert_nothing_works(client, attacker)
    if attacker.status_code == 200:
        claims = jwt.decode(attacker.json()["access_token"], options={"verify_signature": False})
        assert claims["amr"] == ["pwd"]  # decided on the state before MFA
    # The owner's session made the change: it stays signed in.
    assert (await client.get("/users/me", headers=owner.auth)).status_code == 200


async def test_a_login_with_the_old_password_in_flight_does_not_survive_a_change(
    owner: Owner,
) -> None:
    client = owner.client
    new_password = "a brand new passphrase"

    async def change() -> None:
        r = await client.post(
            "/auth/password",
            headers=owner.auth,
            json={"current_password": PASSWORD, "new_password": new_password},
        )
        assert r.status_code == 204, r.text

    attacker = await login_held_across(client, owner.hasher, owner.email, PASSWORD, change)
    await assert_nothing_works(client, attacker)
    again = await client.post("/auth/login", json={"email": owner.email, "password": PASSWORD})
    assert again.status_code == 401
    assert (await client.get("/users/me", headers=owner.auth)).status_code == 200
    await login(client, owner.email, new_password)


async def test_a_pending_challenge_dies_with_a_password_change(
    backend: Backend, clock: FakeClock
) -> None:
    async with serving(settings_for(backend), clock) as (_, client):
        user = await mfa_user(client, clock)
        token = await challenge(client, user.email)
        owner = await client.post(
            "/mfa/challenge",
            json={
                "challenge_token": await challenge(client, user.email),
                "code": totp_code(user.secret, clock),
            },  # fmt: skip
        )
        clock.advance(30)
        r = await client.post(
            "/auth/password",
            headers=bearer(owner.json()["access_token"]),
            json={
                "current_password": PASSWORD,
                "new_password": "a brand new passphrase",
                "code": totp_code(user.secret, clock),
            },
        )
        assert r.status_code == 204, r.text
        clock.advance(30)
        late = await client.post(
            "/mfa/challenge",
            json={"challenge_token": token, "code": totp_code(user.secret, clock)},
        )
        assert late.status_code == 401
        assert late.json()["code"] == "challenge_expired"


async def test_a_forged_or_altered_challenge_token_finds_nothing(
    backend: Backend, clock: FakeClock
) -> None:
    async with serving(settings_for(backend), clock) as (_, client):
        user = await mfa_user(client, clock)
        token = await challenge(client, user.email)
        flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
        for forged in (flipped, token[:-2], "x" * len(token), f"{user.email}.{token}"):
            r = await client.post(
                "/mfa/challenge",
                json={"challenge_token": forged, "code": totp_code(user.secret, clock)},
            )
            assert r.status_code == 401
            assert r.json()["code"] == "challenge_expired"
        ok = await client.post(
            "/mfa/challenge", json={"challenge_token": token, "code": totp_code(user.secret, clock)}
        )
        assert ok.status_code == 200


async def test_an_access_token_never_outlives_its_session(
    backend: Backend, clock: FakeClock
) -> None:
    settings = settings_for(backend, session_max_age=600, session_idle_timeout=600)
    async with serving(settings, clock) as (_, client):
        email = new_email()
        await register(client, email)
        tokens = await login(client, email)
        claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
        assert claims["exp"] - claims["iat"] == 600 == tokens["expires_in"]
        session_end = claims["iat"] + 600
        clock.advance(550)
        r = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert r.status_code == 200
        refreshed = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
        assert refreshed["exp"] == session_end
        assert r.json()["expires_in"] == 50
        clock.advance(50)
        me = await client.get("/users/me", headers=bearer(r.json()["access_token"]))
        assert me.status_code == 401
        again = await client.post(
            "/auth/refresh", json={"refresh_token": r.json()["refresh_token"]}
        )
        assert again.status_code == 401
