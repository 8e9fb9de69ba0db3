"""Security keys as a second factor: registration, the challenge, step-up, management."""

from __future__ import annotations

from typing import Any

import httpx
import jwt

from tests.support import (
    FakeClock,
    bearer,
    login,
    mfa_login,
    mfa_user,
    registered_login,
    totp_code,
)
from tests.webauthn.authenticator import SoftAuthenticator
from tests.webauthn.flows import (
    ORIGIN,
    KeyUser,
    answer,
    creation_options,
    key_challenge,
    key_login,
    key_user,
    post_registration,
    register_key,
    step_up_options,
)


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


async def me(client: httpx.AsyncClient, token: str) -> int:
    return (await client.get("/users/me", headers=bearer(token))).status_code


async def test_creation_options_are_the_w3c_json_form(client: httpx.AsyncClient) -> None:
    email, tokens = await registered_login(client)
    options = await creation_options(client, tokens["access_token"])
    assert options["rp"] == {"id": "mfa.test", "name": "mfa-service"}
    assert options["user"]["name"] == email
    assert email not in options["user"]["id"]  # the handle is not the email
    assert len(options["challenge"]) >= 43  # 256 bits, base64url without padding
    assert "=" not in options["challenge"]
    assert options["attestation"] == "none"
    assert options["excludeCredentials"] == []
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["authenticatorSelection"]["userVerification"] == "discouraged"
    assert None not in options.values()  # absent, not null: browsers refuse null members

    passkey = await creation_options(client, tokens["access_token"], passkey=True)
    assert passkey["authenticatorSelection"]["residentKey"] == "required"
    assert passkey["authenticatorSelection"]["userVerification"] == "required"
    assert passkey["challenge"] != options["challenge"]


async def test_first_key_turns_mfa_on_with_backup_codes_and_ends_other_sessions(
    client: httpx.AsyncClient,
) -> None:
    email, tokens = await registered_login(client)
    other = await login(client, email)  # another device
    key = SoftAuthenticator(origin=ORIGIN, aaguid=bytes(range(16)), transports=["usb", "nfc"])
    body = await register_key(client, tokens["access_token"], key, name="YubiKey")
    assert len(body["backup_codes"]) == 10
    credential = body["credential"]
    assert credential["name"] == "YubiKey"
    assert credential["passkey"] is False
    assert credential["device_bound"] is True
    assert credential["backed_up"] is False
    assert credential["transports"] == ["usb", "nfc"]
    assert credential["aaguid"] == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert credential["last_used_at"] is None

    assert await me(client, tokens["access_token"]) == 200  # the session that registered
    assert await me(client, other["access_token"]) == 401
    refresh = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert refresh.status_code == 401

    state = (await client.get("/mfa", headers=bearer(tokens["access_token"]))).json()
    assert state["mfa_enabled"] is True
    assert state["webauthn"] == {"credentials": 1}
    assert state["backup_codes"] == {"remaining": 10}
    assert state["totp"] == {"enabled": False, "pending": False}

    # A second key needs the first one proven (the token above has amr [pwd] only).
    refused = await client.post(
        "/mfa/webauthn/registrations/options", headers=bearer(tokens["access_token"]), json={}
    )
    assert refused.status_code == 401
    assert refused.json()["code"] == "insufficient_user_authentication"
    user = KeyUser(email, tokens["access_token"], key, body["backup_codes"])
    fresh = (await key_login(client, user))["access_token"]
    # No new codes; the first key is excluded from its options.
    options = await creation_options(client, fresh)
    assert [c["id"] for c in options["excludeCredentials"]] == [key.credentials[0].id_b64]
    second = SoftAuthenticator(origin=ORIGIN)
    r = await post_registration(client, fresh, second.create(options))
    assert r.status_code == 201, r.text
    assert r.json()["backup_codes"] == []


async def test_login_with_a_security_key(client: httpx.AsyncClient) -> None:
    user = await key_user(client)
    token, options = await key_challenge(client, user.email)
    body = await login(client, user.email)
    assert body["methods"] == ["backup_code", "webauthn"]
    assert options["rpId"] == "mfa.test"
    assert options["userVerification"] == "discouraged"
    assert [c["id"] for c in options["allowCredentials"]] == [
        user.authenticator.credentials[0].id_b64
    ]
    r = await answer(client, token, user.authenticator.get(options))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    access = claims(r.json()["access_token"])
    assert access["amr"] == ["pwd", "mfa", "hwk"]
    assert await me(client, r.json()["access_token"]) == 200

    listed = await client.get("/mfa/webauthn/credentials", headers=bearer(user.access_token))
    (item,) = listed.json()["items"]
    assert item["last_used_at"] is not None


async def test_a_synced_passkey_is_swk_and_zero_counters_are_accepted(
    client: httpx.AsyncClient,
) -> None:
    synced = SoftAuthenticator(origin=ORIGIN, backup_eligible=True, backed_up=True, counter_step=0)
    user = await key_user(client, synced)
    for _ in range(3):  # the counter stays 0 every time
        tokens = await key_login(client, user)
        assert claims(tokens["access_token"])["amr"] == ["pwd", "mfa", "swk"]
    (item,) = (
        await client.get("/mfa/webauthn/credentials", headers=bearer(user.access_token))
    ).json()["items"]
    assert item["device_bound"] is False
    assert item["backed_up"] is True


async def test_backup_codes_still_answer_a_key_users_challenge(client: httpx.AsyncClient) -> None:
    user = await key_user(client)
    token, _ = await key_challenge(client, user.email)
    r = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "backup_code": user.backup_codes[0]}
    )
    assert r.status_code == 200, r.text
    assert claims(r.json()["access_token"])["amr"] == ["pwd", "mfa", "recovery"]


async def test_step_up_with_a_security_key(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await key_user(client)
    tokens = await key_login(client, user)
    clock.advance(600)
    r = await step_up_options(client, tokens["access_token"])
    assert r.status_code == 200, r.text
    options = r.json()
    stepped = await client.post(
        "/mfa/step-up",
        headers=bearer(tokens["access_token"]),
        json={"webauthn": user.authenticator.get(options)},
    )
    assert stepped.status_code == 200, stepped.text
    fresh = claims(stepped.json()["access_token"])
    assert fresh["amr"] == ["mfa", "hwk"]
    assert fresh["auth_time"] == int(clock.time())
    assert fresh["sid"] == claims(tokens["access_token"])["sid"]

    # The options were used up, and they belong to that session alone.
    again = await client.post(
        "/mfa/step-up",
        headers=bearer(tokens["access_token"]),
        json={"webauthn": user.authenticator.get(options)},
    )
    assert again.status_code == 401
    assert again.json()["code"] == "invalid_code"
    other = await key_login(client, user)
    options = (await step_up_options(client, tokens["access_token"])).json()
    elsewhere = await client.post(
        "/mfa/step-up",
        headers=bearer(other["access_token"]),
        json={"webauthn": user.authenticator.get(options)},
    )
    assert elsewhere.status_code == 401


async def test_step_up_options_need_a_key(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)  # TOTP only
    tokens = await mfa_login(client, user, clock)
    r = await step_up_options(client, tokens["access_token"])
    assert r.status_code == 403
    assert r.json()["code"] == "no_webauthn_credential"


async def test_totp_and_a_key_together(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    tokens = await mfa_login(client, user, clock)  # recent, with mfa
    key = SoftAuthenticator(origin=ORIGIN)
    body = await register_key(client, tokens["access_token"], key)
    assert body["backup_codes"] == []  # the user had a second factor already
    login_body = await login(client, user.email)
    assert login_body["methods"] == ["totp", "backup_code", "webauthn"]
    # Either works.
    r = await answer(client, login_body["challenge_token"], key.get(login_body["webauthn"]))
    assert r.status_code == 200, r.text
    clock.advance(30)
    assert (await mfa_login(client, user, clock))["access_token"]


async def test_rename_list_and_remove(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await key_user(client, name="old name")
    auth = bearer(user.access_token)
    (item,) = (await client.get("/mfa/webauthn/credentials", headers=auth)).json()["items"]
    renamed = await client.patch(
        f"/mfa/webauthn/credentials/{item['id']}", headers=auth, json={"name": "Desk key"}
    )
    assert renamed.status_code == 200, renamed.text
    assert renamed.json() == {**item, "name": "Desk key"}
    assert (
        await client.patch(
            f"/mfa/webauthn/credentials/{item['id']}", headers=auth, json={"name": ""}
        )
    ).status_code == 422

    # Someone else's id is not found, for every verb.
    stranger = await key_user(client)
    theirs = bearer((await key_login(client, stranger))["access_token"])
    path = f"/mfa/webauthn/credentials/{item['id']}"
    assert (await client.patch(path, headers=theirs, json={"name": "x"})).status_code == 404
    assert (await client.delete(path, headers=theirs)).status_code == 404

    # Removal needs a recent authentication with a second factor.
    other_session = await key_login(client, user)
    clock.advance(301)
    stale = await client.delete(path, headers=auth)
    assert stale.status_code == 401
    assert stale.json()["code"] == "insufficient_user_authentication"
    assert "max_age=300" in stale.headers["www-authenticate"]
    fresh = await key_login(client, user)
    removed = await client.delete(path, headers=bearer(fresh["access_token"]))
    assert removed.status_code == 204

    # The last factor gone: MFA off, backup codes void, the other sessions ended.
    state = (await client.get("/mfa", headers=bearer(fresh["access_token"]))).json()
    assert state["mfa_enabled"] is False
    assert state["webauthn"] == {"credentials": 0}
    assert state["backup_codes"] == {"remaining": 0}
    assert await me(client, other_session["access_token"]) == 401
    assert (await login(client, user.email))["status"] == "authenticated"
    events = (await client.get("/users/me/events", headers=bearer(fresh["access_token"]))).json()
    types = [e["type"] for e in events["items"]]
    assert "webauthn.removed" in types
    assert "webauthn.registered" in types


async def test_removing_one_of_two_factors_keeps_mfa_on(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await mfa_user(client, clock)
    tokens = await mfa_login(client, user, clock)
    body = await register_key(client, tokens["access_token"], SoftAuthenticator(origin=ORIGIN))
    removed = await client.delete(
        f"/mfa/webauthn/credentials/{body['credential']['id']}",
        headers=bearer(tokens["access_token"]),
    )
    assert removed.status_code == 204
    state = (await client.get("/mfa", headers=bearer(tokens["access_token"]))).json()
    assert state["mfa_enabled"] is True
    assert state["backup_codes"]["remaining"] == 10
    assert (await login(client, user.email))["methods"] == ["totp", "backup_code"]

    # And removing TOTP while a key remains keeps MFA on too.
    key = SoftAuthenticator(origin=ORIGIN)
    await register_key(client, tokens["access_token"], key)
    clock.advance(30)
    r = await client.request(
        "DELETE",
        "/mfa/totp",
        headers=bearer(tokens["access_token"]),
        json={"password": "correct horse battery staple", "code": totp_code(user.secret, clock)},
    )
    assert r.status_code == 204, r.text
    state = (await client.get("/mfa", headers=bearer(tokens["access_token"]))).json()
    assert state["mfa_enabled"] is True
    assert state["totp"]["enabled"] is False
    assert (await login(client, user.email))["methods"] == ["backup_code", "webauthn"]


async def test_password_change_takes_a_key_as_its_second_factor(
    client: httpx.AsyncClient,
) -> None:
    user = await key_user(client)
    tokens = await key_login(client, user)
    options = (await step_up_options(client, tokens["access_token"])).json()
    r = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={
            "current_password": "correct horse battery staple",
            "new_password": "another long passphrase here",
            "webauthn": user.authenticator.get(options),
        },
    )
    assert r.status_code == 204, r.text
    missing = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={
            "current_password": "another long passphrase here",
            "new_password": "yet another long passphrase",
        },
    )
    assert missing.status_code == 401
    assert missing.json()["code"] == "invalid_code"


async def test_a_key_user_renews_backup_codes_with_the_key(client: httpx.AsyncClient) -> None:
    user = await key_user(client)
    tokens = await key_login(client, user)
    options = (await step_up_options(client, tokens["access_token"])).json()
    r = await client.post(
        "/mfa/backup-codes",
        headers=bearer(tokens["access_token"]),
        json={"webauthn": user.authenticator.get(options)},
    )
    assert r.status_code == 200, r.text
    fresh = r.json()["backup_codes"]
    assert len(fresh) == 10
    assert set(fresh).isdisjoint(user.backup_codes)
    # A backup code is no proof of presence for new ones.
    refused = await client.post(
        "/mfa/backup-codes",
        headers=bearer(tokens["access_token"]),
        json={"backup_code": fresh[0]},
    )
    assert refused.status_code == 422
    token, _ = await key_challenge(client, user.email)
    old = await client.post(
        "/mfa/challenge", json={"challenge_token": token, "backup_code": user.backup_codes[0]}
    )
    assert old.status_code == 401
