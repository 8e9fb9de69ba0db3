"""Enforced enrollment (SPEC §8, MFA_REQUIRE_MFA): no tokens without a second factor; the
enrollment token works at the enrollment routes only, expires, and its success signs in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    login,
    mfa_user,
    new_email,
    register,
    registered_login,
    running_app,
    settings_for,
    totp_code,
)
from tests.webauthn.authenticator import SoftAuthenticator
from tests.webauthn.flows import ORIGIN, register_key

TTL = 600


@pytest.fixture
async def client(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(backend, require_mfa=True, enrollment_ttl=TTL)
    async with running_app(settings, clock) as c:
        yield c


async def enrollment_token(client: httpx.AsyncClient, email: str | None = None) -> str:
    email = email or new_email()
    await register(client, email)
    r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"status", "enrollment_token", "expires_in"}
    assert body["status"] == "mfa_enrollment_required"
    assert body["expires_in"] == TTL
    assert r.headers["Cache-Control"] == "no-store"
    token: str = body["enrollment_token"]
    return token


def amr(access_token: str) -> list[str]:
    return list(jwt.decode(access_token, options={"verify_signature": False})["amr"])


async def test_enrollment_with_totp_signs_in(client: httpx.AsyncClient, clock: FakeClock) -> None:
    email = new_email()
    auth = bearer(await enrollment_token(client, email))
    setup = await client.post("/mfa/totp/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    for path in ("/mfa/totp/qr.png", "/mfa/totp/qr.svg"):
        assert (await client.get(path, headers=auth)).status_code == 200
    confirmed = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(secret, clock)}
    )
    assert confirmed.status_code == 200, confirmed.text
    body = confirmed.json()
    assert body["mfa_enabled"] is True
    assert len(body["backup_codes"]) == 10
    assert body["status"] == "authenticated"
    assert body["token_type"] == "Bearer"
    assert confirmed.headers["Cache-Control"] == "no-store"
    assert amr(body["access_token"]) == ["pwd", "mfa", "otp"]
    me = await client.get("/users/me", headers=bearer(body["access_token"]))
    assert me.json()["mfa_enabled"] is True
    refreshed = await client.post("/auth/refresh", json={"refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200
    # Used up by its success.
    assert (await client.post("/mfa/totp/setup", headers=auth)).status_code == 401
    # From now on the login is the usual challenge.
    clock.advance(30)
    assert (await login(client, email))["status"] == "mfa_required"


async def test_enrollment_with_a_security_key_signs_in(client: httpx.AsyncClient) -> None:
    token = await enrollment_token(client)
    body = await register_key(client, token, SoftAuthenticator(origin=ORIGIN))
    assert len(body["backup_codes"]) == 10
    assert amr(body["access_token"]) == ["pwd", "mfa", "hwk"]
    assert (await client.get("/mfa", headers=bearer(body["access_token"]))).status_code == 200


ELSEWHERE: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/users/me", None),
    ("GET", "/mfa", None),
    ("GET", "/users/me/sessions", None),
    ("GET", "/users/me/events", None),
    ("GET", "/mfa/webauthn/credentials", None),
    ("POST", "/auth/logout", None),
    ("POST", "/auth/reauthenticate", {"password": PASSWORD}),
    ("POST", "/auth/password", {"current_password": PASSWORD, "new_password": "x" * 20}),
    ("POST", "/mfa/step-up", {"code": "123456"}),
    ("POST", "/mfa/step-up/options", None),
    ("POST", "/mfa/backup-codes", {"code": "123456"}),
    ("DELETE", "/mfa/totp", {"password": PASSWORD, "code": "123456"}),
    ("DELETE", "/users/me/devices", None),
]


async def test_the_enrollment_token_is_refused_everywhere_else(client: httpx.AsyncClient) -> None:
    token = await enrollment_token(client)
    for method, path, body in ELSEWHERE:
        r = await client.request(method, path, headers=bearer(token), json=body)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["code"] == "invalid_token", path
    r = await client.post("/mfa/challenge", json={"challenge_token": token, "code": "123456"})
    assert r.json()["code"] == "challenge_expired"
    r = await client.post("/mfa/challenge", headers=bearer(token), json={"code": "123456"})
    assert r.json()["code"] == "challenge_expired"
    r = await client.post("/auth/refresh", json={"refresh_token": token})
    assert r.json()["code"] == "invalid_refresh_token"
    # Nor is it a session the user could list or end: still only good for enrolling.
    assert (await client.post("/mfa/totp/setup", headers=bearer(token))).status_code == 200


async def test_the_enrollment_token_expires(client: httpx.AsyncClient, clock: FakeClock) -> None:
    token = await enrollment_token(client)
    clock.advance(TTL - 1)
    setup = await client.post("/mfa/totp/setup", headers=bearer(token))
    assert setup.status_code == 200
    clock.advance(1)
    r = await client.post(
        "/mfa/totp/confirm",
        headers=bearer(token),
        json={"code": totp_code(setup.json()["secret"], clock)},
    )
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"
    for made_up in ("not-a-token", "A" * 43):
        r = await client.post("/mfa/totp/setup", headers=bearer(made_up))
        assert r.status_code == 401


async def test_a_wrong_code_keeps_the_enrollment_open(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    auth = bearer(await enrollment_token(client))
    secret = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    wrong = await client.post("/mfa/totp/confirm", headers=auth, json={"code": "000000"})
    assert wrong.status_code == 401
    assert "access_token" not in wrong.text
    right = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(secret, clock)}
    )
    assert right.status_code == 200
    assert "access_token" in right.json()


async def test_concurrent_confirmations_sign_in_once(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """The same enrollment token and code sent 5 times at once: one session, and it works."""
    auth = bearer(await enrollment_token(client))
    secret = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    code = totp_code(secret, clock)
    answers = await asyncio.gather(
        *(client.post("/mfa/totp/confirm", headers=auth, json={"code": code}) for _ in range(5))
    )
    signed_in = [r.json() for r in answers if r.status_code == 200]
    assert len(signed_in) == 1, [r.text for r in answers]
    assert all(r.status_code in {400, 401} for r in answers if r.status_code != 200)
    me = await client.get("/users/me", headers=bearer(signed_in[0]["access_token"]))
    assert me.status_code == 200


async def test_turned_on_later_ends_the_sessions_made_without_a_second_factor(
    backend: Backend, clock: FakeClock
) -> None:
    """Sessions from before MFA_REQUIRE_MFA=true that no second factor made do not refresh
    any more (the user logs in and enrols); a session a second factor made lives on."""
    settings = settings_for(backend)
    async with running_app(settings, clock) as c:
        email, plain = await registered_login(c)
        _, raced = await registered_login(c)
        user = await mfa_user(c, clock)
        code = totp_code(user.secret, clock)
        login_answer = await login(c, user.email)
        r = await c.post(
            "/mfa/challenge",
            json={"challenge_token": login_answer["challenge_token"], "code": code},
        )
        assert r.status_code == 200, r.text
        with_factor = r.json()
    enforced = settings.model_copy(update={"require_mfa": True})
    async with running_app(enforced, clock) as c:
        refused = await c.post("/auth/refresh", json={"refresh_token": plain["refresh_token"]})
        assert refused.status_code == 401
        assert refused.json()["code"] == "invalid_refresh_token"
        # The session is over, not only this refresh: its access token is refused too.
        sessions = await c.get("/users/me/sessions", headers=bearer(plain["access_token"]))
        assert sessions.status_code == 401
        again = await c.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert again.json()["status"] == "mfa_enrollment_required"

        # Presented by many at once, the token renews nothing: every answer is 401.
        answers = await asyncio.gather(
            *(
                c.post("/auth/refresh", json={"refresh_token": raced["refresh_token"]})
                for _ in range(8)
            )
        )
        assert [r.status_code for r in answers] == [401] * 8
        assert (await c.get("/users/me", headers=bearer(raced["access_token"]))).status_code == 401

        kept = await c.post("/auth/refresh", json={"refresh_token": with_factor["refresh_token"]})
        assert kept.status_code == 200, kept.text
        assert amr(kept.json()["access_token"]) == ["pwd", "mfa", "otp"]
