from __future__ import annotations

import httpx
import jwt

from tests.support import (
    PASSWORD,
    FakeClock,
    bearer,
    challenge,
    login,
    mfa_user,
    registered_login,
    totp_code,
)


async def test_disable_needs_password_and_a_factor(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    auth = bearer(user.access_token)
    code = totp_code(user.secret, clock)
    for body, status in (
        ({"password": PASSWORD}, 422),
        ({"password": "wrong password", "code": code}, 401),
        ({"password": PASSWORD, "code": "000000"}, 401),
        ({"password": PASSWORD, "backup_code": "zzzzz-zzzzz"}, 401),
    ):
        r = await client.request("DELETE", "/mfa/totp", headers=auth, json=body)
        assert r.status_code == status, body
    assert (await client.get("/mfa", headers=auth)).json()["mfa_enabled"] is True
    ok = await client.request(
        "DELETE", "/mfa/totp", headers=auth, json={"password": PASSWORD, "code": code}
    )
    assert ok.status_code == 204
    assert (await client.get("/mfa", headers=auth)).json() == {
        "mfa_enabled": False,
        "totp": {"enabled": False, "pending": False},
        "backup_codes": {"remaining": 0},
        "webauthn": {"credentials": 0},
    }
    tokens = await login(client, user.email)
    assert tokens["status"] == "authenticated"


async def test_disable_with_a_backup_code(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    r = await client.request(
        "DELETE",
        "/mfa/totp",
        headers=bearer(user.access_token),
        json={"password": PASSWORD, "backup_code": user.backup_codes[0]},
    )
    assert r.status_code == 204


async def test_disabling_mfa_voids_pending_challenges_and_other_sessions(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    pending = await challenge(client, user.email)
    r = await client.request(
        "DELETE",
        "/mfa/totp",
        headers=bearer(user.access_token),
        json={"password": PASSWORD, "code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 204
    clock.advance(30)
    late = await client.post(
        "/mfa/challenge",
        json={"challenge_token": pending, "backup_code": user.backup_codes[1]},
    )
    assert late.status_code == 401
    assert late.json()["code"] == "challenge_expired"


async def test_regenerate_backup_codes(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    auth = bearer(user.access_token)
    wrong = await client.post("/mfa/backup-codes", headers=auth, json={"code": "000000"})
    assert wrong.status_code == 401
    backup_as_proof = await client.post(
        "/mfa/backup-codes", headers=auth, json={"code": user.backup_codes[0]}
    )
    assert backup_as_proof.status_code == 401
    r = await client.post(
        "/mfa/backup-codes", headers=auth, json={"code": totp_code(user.secret, clock)}
    )
    assert r.status_code == 200
    fresh = r.json()["backup_codes"]
    assert len(fresh) == 10
    assert not set(fresh) & set(user.backup_codes)
    old = await client.post(
        "/mfa/challenge",
        json={
            "challenge_token": await challenge(client, user.email),
            "backup_code": user.backup_codes[1],
        },
    )
    assert old.status_code == 401
    new = await client.post(
        "/mfa/challenge",
        json={"challenge_token": await challenge(client, user.email), "backup_code": fresh[0]},
    )
    assert new.status_code == 200
    # Regenerating codes revokes only the old codes: this session lives on.
    assert (await client.get("/users/me", headers=auth)).status_code == 200


async def test_regenerate_needs_mfa(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post(
        "/mfa/backup-codes", headers=bearer(tokens["access_token"]), json={"code": "123456"}
    )
    assert r.status_code == 403
    assert r.json()["code"] == "mfa_not_enabled"


async def test_step_up_refreshes_auth_time_and_names_only_the_factor_it_proved(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    token = await challenge(client, user.email)
    session = (
        await client.post(
            "/mfa/challenge", json={"challenge_token": token, "backup_code": user.backup_codes[0]}
        )
    ).json()
    first = jwt.decode(session["access_token"], options={"verify_signature": False})
    assert first["amr"] == ["pwd", "mfa", "recovery"]
    clock.advance(600)
    wrong = await client.post(
        "/mfa/step-up", headers=bearer(session["access_token"]), json={"code": "000000"}
    )
    assert wrong.status_code == 401
    r = await client.post(
        "/mfa/step-up",
        headers=bearer(session["access_token"]),
        json={"code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 200
    stepped = jwt.decode(r.json()["access_token"], options={"verify_signature": False})
    assert stepped["auth_time"] == int(clock.time())
    assert stepped["auth_time"] - first["auth_time"] == 600
    # A step-up is a new authentication event: its amr is what it proved (SPEC §3).
    assert stepped["amr"] == ["mfa", "otp"]
    assert stepped["sid"] == first["sid"]
    events = await client.get(
        "/users/me/events", headers=bearer(r.json()["access_token"]), params={"limit": 3}
    )
    # Same instant on the test clock: compare without order.
    assert {(e["type"], e["detail"]["method"]) for e in events.json()["items"][:2]} == {
        ("step_up.succeeded", "totp"),
        ("step_up.failed", "totp"),
    }
    # The new refresh token works; the one from before the step-up is retired, and showing
    # it again counts as reuse.
    new = await client.post("/auth/refresh", json={"refresh_token": r.json()["refresh_token"]})
    assert new.status_code == 200
    old = await client.post("/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert old.status_code == 401


async def test_step_up_needs_mfa_enabled(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post(
        "/mfa/step-up", headers=bearer(tokens["access_token"]), json={"code": "123456"}
    )
    assert r.status_code == 403


async def test_password_change_needs_a_code_when_mfa_is_on(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    auth = bearer(user.access_token)
    body = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    missing = await client.post("/auth/password", headers=auth, json=body)
    assert missing.status_code == 401
    assert missing.json()["code"] == "invalid_code"
    wrong = await client.post("/auth/password", headers=auth, json={**body, "code": "000000"})
    assert wrong.status_code == 401
    pending = await challenge(client, user.email)
    ok = await client.post(
        "/auth/password", headers=auth, json={**body, "code": totp_code(user.secret, clock)}
    )
    assert ok.status_code == 204
    late = await client.post(
        "/mfa/challenge", json={"challenge_token": pending, "backup_code": user.backup_codes[0]}
    )
    assert late.status_code == 401
    assert late.json()["code"] == "challenge_expired"
