"""Recent authentication (SPEC §4, RFC 9470): enrolling a factor needs a fresh authentication
event; `/auth/reauthenticate` (password) and `/mfa/step-up` (a factor) give one, with the amr
of that event only (SPEC §3)."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    mfa_login,
    mfa_user,
    registered_login,
    running_app,
    settings_for,
    totp_code,
)

CHALLENGE = 'Bearer error="insufficient_user_authentication", max_age=300'


def claims(tokens: dict[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(
        tokens["access_token"], options={"verify_signature": False}
    )
    return decoded


def assert_insufficient(r: httpx.Response) -> None:
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "insufficient_user_authentication"
    assert r.headers["www-authenticate"] == CHALLENGE
    assert r.headers["content-type"] == "application/problem+json"


async def reauthenticate(
    client: httpx.AsyncClient, tokens: dict[str, Any], password: str = PASSWORD
) -> httpx.Response:
    return await client.post(
        "/auth/reauthenticate", headers=bearer(tokens["access_token"]), json={"password": password}
    )


async def test_an_old_token_cannot_enrol_until_the_password_is_proven_again(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, tokens = await registered_login(client)
    clock.advance(301)  # the token is valid (900 s) but its authentication is not recent
    assert_insufficient(
        await client.post("/mfa/totp/setup", headers=bearer(tokens["access_token"]))
    )
    wrong = await reauthenticate(client, tokens, "not the password at all")
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "invalid_credentials"

    r = await reauthenticate(client, tokens)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    fresh = r.json()
    before, after = claims(tokens), claims(fresh)
    assert after["sid"] == before["sid"]
    assert after["amr"] == ["pwd"]
    assert after["auth_time"] == int(clock.time()) == before["auth_time"] + 301
    auth = bearer(fresh["access_token"])
    setup = await client.post("/mfa/totp/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    clock.advance(200)  # still within 300 s of the reauthentication
    code = totp_code(setup.json()["secret"], clock)
    confirm = await client.post("/mfa/totp/confirm", headers=auth, json={"code": code})
    assert confirm.status_code == 200, confirm.text
    # The refresh token of the earlier event was retired: presenting it is reuse, which ends
    # the session.
    old = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert old.status_code == 401
    assert (await client.get("/users/me", headers=auth)).status_code == 401


async def test_confirming_needs_a_recent_authentication_too(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    _, tokens = await registered_login(client)
    auth = bearer(tokens["access_token"])
    secret = (await client.post("/mfa/totp/setup", headers=auth)).json()["secret"]
    clock.advance(301)
    code = totp_code(secret, clock)
    assert_insufficient(await client.post("/mfa/totp/confirm", headers=auth, json={"code": code}))
    state = await client.get("/mfa", headers=auth)
    assert state.json()["mfa_enabled"] is False


async def test_a_user_with_a_second_factor_steps_up_instead(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    pwd_only = {"access_token": user.access_token}  # from before TOTP was enabled: amr [pwd]
    refused = await reauthenticate(client, pwd_only)
    assert refused.status_code == 403
    assert refused.json()["code"] == "step_up_required"
    # Recent, but without the second factor the user has: not enough to enrol.
    assert_insufficient(await client.post("/mfa/totp/setup", headers=bearer(user.access_token)))
    r = await client.post(
        "/mfa/step-up",
        headers=bearer(user.access_token),
        json={"code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 200, r.text
    assert claims(r.json())["amr"] == ["mfa", "otp"]
    again = await client.post("/mfa/totp/setup", headers=bearer(r.json()["access_token"]))
    assert again.status_code == 409  # past the recency check: TOTP is already on


async def test_a_backup_code_step_up_names_only_recovery(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    session = await mfa_login(client, user, clock)
    assert claims(session)["amr"] == ["pwd", "mfa", "otp"]
    clock.advance(600)
    r = await client.post(
        "/mfa/step-up",
        headers=bearer(session["access_token"]),
        json={"backup_code": user.backup_codes[0]},
    )
    assert r.status_code == 200, r.text
    stepped = claims(r.json())
    # A fresh event that proved a backup code, not TOTP: a service that wants a recent
    # "otp" must not take it (SPEC §3).
    assert stepped["amr"] == ["mfa", "recovery"]
    assert stepped["auth_time"] == int(clock.time())
    refreshed = await client.post(
        "/auth/refresh", json={"refresh_token": r.json()["refresh_token"]}
    )
    assert claims(refreshed.json())["amr"] == ["mfa", "recovery"]  # a refresh keeps both
    assert claims(refreshed.json())["auth_time"] == stepped["auth_time"]


async def test_reauthentication_is_counted_like_a_login(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, login_max_failures=2)
    async with running_app(settings, clock) as client:
        _, tokens = await registered_login(client)
        for _ in range(2):
            assert (await reauthenticate(client, tokens, "wrong guess here")).status_code == 401
        locked = await reauthenticate(client, tokens)
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) >= 1
        assert "access_token" not in locked.text


async def test_reauthenticate_needs_a_live_access_token(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/reauthenticate", json={"password": PASSWORD})
    assert r.status_code == 401
    assert r.json()["code"] == "invalid_token"
