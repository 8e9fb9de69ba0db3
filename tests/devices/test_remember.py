"""Remember this device (SPEC §8): a later login skips the challenge, amr [pwd, mfa, device],
until a password change, an MFA change, DELETE /users/me/devices or the end of its days."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    MfaUser,
    bearer,
    mfa_user,
    running_app,
    settings_for,
    totp_code,
)


def amr(tokens: dict[str, Any]) -> list[str]:
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return list(claims["amr"])


async def answer(
    client: httpx.AsyncClient, user: MfaUser, clock: FakeClock, remember: bool, **login: Any
) -> dict[str, Any]:
    """Password (with a device token, if given), then the current code; the clock moves on a
    step so the next code is fresh."""
    r = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD, **login})
    assert r.json()["status"] == "mfa_required", r.text
    answered = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": r.json()["challenge_token"],
            "code": totp_code(user.secret, clock),
            "remember_device": remember,
        },
    )
    assert answered.status_code == 200, answered.text
    clock.advance(30)
    body: dict[str, Any] = answered.json()
    return body


async def log_in(
    client: httpx.AsyncClient, email: str, device_token: str, password: str = PASSWORD
) -> dict[str, Any]:
    r = await client.post(
        "/auth/login", json={"email": email, "password": password, "device_token": device_token}
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def remembered_user(client: httpx.AsyncClient, clock: FakeClock) -> tuple[MfaUser, str]:
    user = await mfa_user(client, clock)
    tokens = await answer(client, user, clock, remember=True)
    return user, tokens["device_token"]


async def event_types(client: httpx.AsyncClient, access_token: str) -> list[tuple[str, Any]]:
    r = await client.get("/users/me/events", headers=bearer(access_token))
    return [(e["type"], e["detail"]) for e in r.json()["items"]]


async def test_a_remembered_device_skips_the_challenge(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user, device = await remembered_user(client, clock)
    skipped = await log_in(client, user.email, device)
    assert skipped["status"] == "authenticated"
    assert amr(skipped) == ["pwd", "mfa", "device"]
    # The rotated token stays remembered; the one it replaced is no device at all.
    again = await log_in(client, user.email, skipped["device_token"])
    assert again["status"] == "authenticated"
    assert (await log_in(client, user.email, device))["status"] == "mfa_required"
    events = await event_types(client, again["access_token"])
    assert ("device.remembered", {}) in events
    assert ("login.succeeded", {"next": "remembered_device"}) in events
    # A wrong password is still a wrong password.
    r = await client.post(
        "/auth/login",
        json={"email": user.email, "password": "wrong", "device_token": again["device_token"]},
    )
    assert r.status_code == 401


async def test_without_remember_device_the_challenge_stays(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    device = (await answer(client, user, clock, remember=False))["device_token"]
    assert (await log_in(client, user.email, device))["status"] == "mfa_required"


async def test_a_device_session_proved_no_factor_now(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    """It cannot enroll a factor nor forget devices: those need a factor proven recently."""
    user, device = await remembered_user(client, clock)
    skipped = await log_in(client, user.email, device)
    auth = bearer(skipped["access_token"])
    for method, path in (("DELETE", "/users/me/devices"), ("POST", "/mfa/totp/setup")):
        r = await client.request(method, path, headers=auth)
        assert r.status_code == 401, path
        assert r.json()["code"] == "insufficient_user_authentication"
    # A step-up proves one: then it may.
    r = await client.post(
        "/mfa/step-up", headers=auth, json={"code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200
    assert amr(r.json()) == ["mfa", "otp"]
    r = await client.delete("/users/me/devices", headers=bearer(r.json()["access_token"]))
    assert r.status_code == 204


async def test_delete_devices_forgets_them_all(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user, phone = await remembered_user(client, clock)
    laptop = (await answer(client, user, clock, remember=True))["device_token"]
    tokens = await answer(client, user, clock, remember=False)
    # Not recent any more: 401 with the RFC 9470 challenge.
    clock.advance(301)
    stale = await client.delete("/users/me/devices", headers=bearer(tokens["access_token"]))
    assert stale.status_code == 401
    assert "max_age=300" in stale.headers["WWW-Authenticate"]
    tokens = await answer(client, user, clock, remember=False)
    r = await client.delete("/users/me/devices", headers=bearer(tokens["access_token"]))
    assert r.status_code == 204
    for device in (phone, laptop):
        assert (await log_in(client, user.email, device))["status"] == "mfa_required"
    assert ("devices.forgotten", {"count": "2"}) in await event_types(
        client, tokens["access_token"]
    )


async def test_a_password_change_forgets_them(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user, device = await remembered_user(client, clock)
    tokens = await log_in(client, user.email, device)
    new_password = "a whole new passphrase 42"
    r = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={
            "current_password": PASSWORD,
            "new_password": new_password,
            "code": totp_code(user.secret, clock),
        },
    )
    assert r.status_code == 204, r.text
    relogin = await log_in(client, user.email, tokens["device_token"], new_password)
    assert relogin["status"] == "mfa_required"


async def test_an_mfa_change_forgets_them(client: httpx.AsyncClient, clock: FakeClock) -> None:
    """TOTP removed and enrolled again: two MFA changes, each forgets every device."""
    user, device = await remembered_user(client, clock)
    tokens = await answer(client, user, clock, remember=False)
    auth = bearer(tokens["access_token"])
    r = await client.request(
        "DELETE",
        "/mfa/totp",
        headers=auth,
        json={"password": PASSWORD, "code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 204, r.text
    setup = await client.post("/mfa/totp/setup", headers=auth)
    assert setup.status_code == 200, setup.text
    secret = setup.json()["secret"]
    r = await client.post(
        "/mfa/totp/confirm", headers=auth, json={"code": totp_code(secret, clock)}
    )
    assert r.status_code == 200, r.text
    clock.advance(30)
    assert (await log_in(client, user.email, device))["status"] == "mfa_required"


async def test_remembering_ends_after_its_days(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user, device = await remembered_user(client, clock)
    clock.advance(30 * 86400 - 60)
    tokens = await log_in(client, user.email, device)
    assert tokens["status"] == "authenticated"  # the rotation keeps the original end
    clock.advance(61)
    assert (await log_in(client, user.email, tokens["device_token"]))["status"] == "mfa_required"


async def test_zero_days_turns_remembering_off(backend: Backend, clock: FakeClock) -> None:
    async with running_app(settings_for(backend, remember_device_days=0), clock) as client:
        user = await mfa_user(client, clock)
        tokens = await answer(client, user, clock, remember=True)
        assert (await log_in(client, user.email, tokens["device_token"]))["status"] == (
            "mfa_required"
        )
        assert "device.remembered" not in [
            t for t, _ in await event_types(client, tokens["access_token"])
        ]
