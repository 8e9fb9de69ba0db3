"""Issue #11 in a real browser: Chromium's own WebAuthn stack, with a CDP virtual
authenticator, takes the service's options JSON through
`PublicKeyCredential.parseCreationOptionsFromJSON()` / `parseRequestOptionsFromJSON()` and
sends back `credential.toJSON()` unchanged: a security key as second factor, then a passkey
and a passwordless login (SPEC §7)."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.browser.chromium import BrowserPage
from tests.support import PASSWORD, new_email


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


def amr(token: str) -> list[str]:
    methods: list[str] = claims(token)["amr"]
    return methods


def b64url(standard: str) -> str:
    """CDP reports credential ids in standard base64; WebAuthn JSON uses base64url."""
    return standard.replace("+", "-").replace("/", "_").rstrip("=")


def tokens(response: dict[str, Any], browser: BrowserPage, what: str) -> dict[str, Any]:
    body: dict[str, Any] = browser.expect(response, 200, what)
    assert body["status"] == "authenticated", body
    assert body["token_type"] == "Bearer", body
    assert "no-store" in (response["cacheControl"] or ""), response["cacheControl"]
    return body


def created(result: dict[str, Any], what: str) -> dict[str, Any]:
    assert result["ok"], f"{what}: the browser refused the creation options: {result}"
    credential: dict[str, Any] = result["credential"]
    return credential


def asserted(result: dict[str, Any], what: str) -> dict[str, Any]:
    assert result["ok"], f"{what}: the browser refused the request options: {result}"
    credential: dict[str, Any] = result["credential"]
    return credential


async def test_security_key_then_passkey_in_chromium(browser_page: BrowserPage) -> None:
    browser = browser_page
    email = new_email()
    password = {"email": email, "password": PASSWORD}

    # 1. An account and a password login: a fresh authentication, so enrolment may follow.
    user = browser.expect(await browser.call("POST", "/auth/register", password), 201, "register")
    assert user["mfa_enabled"] is False, user
    first = tokens(await browser.call("POST", "/auth/login", password), browser, "login")
    assert amr(first["access_token"]) == ["pwd"]

    # 2. A security key (USB, device-bound) as second factor.
    usb = await browser.add_authenticator("usb")
    options = browser.expect(
        await browser.call(
            "POST",
            "/mfa/webauthn/registrations/options",
            {"passkey": False},
            first["access_token"],
        ),
        200,
        "security key: creation options",
    )
    assert options["rp"]["id"] == "localhost", options
    assert options.get("attestation", "none") == "none", options
    assert options.get("excludeCredentials", []) == [], options
    key = created(await browser.create(options), "security key")
    assert key["response"]["transports"] == ["usb"], key
    registered = browser.expect(
        await browser.call(
            "POST",
            "/mfa/webauthn/registrations",
            {"credential": key, "name": "browser key"},
            first["access_token"],
        ),
        201,
        "security key: registration",
    )
    assert registered["credential"]["name"] == "browser key", registered
    assert registered["credential"]["passkey"] is False, registered
    assert len(registered["backup_codes"]) == 10, registered
    key_id = registered["credential"]["id"]
    [stored_key] = await browser.stored_credentials(usb)
    assert b64url(stored_key["credentialId"]) == key["id"], stored_key
    # What the authenticator reported decides the factor: backed up is a synced passkey.
    key_factor = "swk" if stored_key["backupState"] else "hwk"
    assert registered["credential"]["backed_up"] is stored_key["backupState"], registered

    # 3. Password, then the security key answers the challenge.
    challenge = browser.expect(
        await browser.call("POST", "/auth/login", password), 200, "login with a key"
    )
    assert challenge["status"] == "mfa_required", challenge
    assert "webauthn" in challenge["methods"], challenge
    request = challenge["webauthn"]
    assert [c["id"] for c in request["allowCredentials"]] == [key["id"]], request
    assertion = asserted(await browser.get(request), "challenge")
    assert assertion["id"] == key["id"], assertion
    second = tokens(
        await browser.call(
            "POST",
            "/mfa/challenge",
            {"challenge_token": challenge["challenge_token"], "webauthn": assertion},
        ),
        browser,
        "challenge answered by the security key",
    )
    assert amr(second["access_token"]) == ["pwd", "mfa", key_factor]

    # 4. A passkey, with the login of step 3 (recent, multi-factor). The options exclude the
    # security key, and the browser honours that while the key is still plugged in.
    passkey_options = {"passkey": True}
    options = browser.expect(
        await browser.call(
            "POST",
            "/mfa/webauthn/registrations/options",
            passkey_options,
            second["access_token"],
        ),
        200,
        "passkey: creation options",
    )
    assert [c["id"] for c in options["excludeCredentials"]] == [key["id"]], options
    selection = options["authenticatorSelection"]
    assert selection["residentKey"] == "required", options
    assert selection["userVerification"] == "required", options
    refused = await browser.create(options)
    assert refused["ok"] is False, refused
    assert refused["stage"] == "navigator.credentials.create", refused
    assert refused["error"].startswith("InvalidStateError"), refused

    # The key unplugged; a platform authenticator makes the passkey.
    await browser.remove_authenticator(usb)
    platform = await browser.add_authenticator("internal")
    options = browser.expect(
        await browser.call(
            "POST",
            "/mfa/webauthn/registrations/options",
            passkey_options,
            second["access_token"],
        ),
        200,
        "passkey: creation options again",
    )
    passkey = created(await browser.create(options), "passkey")
    registered_passkey = browser.expect(
        await browser.call(
            "POST",
            "/mfa/webauthn/registrations",
            {"credential": passkey, "name": "browser passkey"},
            second["access_token"],
        ),
        201,
        "passkey: registration",
    )
    assert registered_passkey["credential"]["name"] == "browser passkey", registered_passkey
    assert registered_passkey["credential"]["passkey"] is True, registered_passkey
    assert registered_passkey["backup_codes"] == [], registered_passkey
    passkey_id = registered_passkey["credential"]["id"]
    [stored_passkey] = await browser.stored_credentials(platform)
    assert stored_passkey["isResidentCredential"] is True, stored_passkey
    assert b64url(stored_passkey["credentialId"]) == passkey["id"], stored_passkey
    passkey_factor = "swk" if stored_passkey["backupState"] else "hwk"

    # 5. Passwordless: no account named, the authenticator offers its discoverable passkey.
    request = browser.expect(
        await browser.call("POST", "/auth/passkey/options"), 200, "passkey login: options"
    )
    assert request.get("allowCredentials", []) == [], request
    assert request["userVerification"] == "required", request
    assertion = asserted(await browser.get(request), "passkey login")
    assert assertion["id"] == passkey["id"], assertion
    assert assertion["response"]["userHandle"], assertion
    third = tokens(
        await browser.call("POST", "/auth/passkey", {"credential": assertion}),
        browser,
        "passkey login",
    )
    assert amr(third["access_token"]) == [passkey_factor, "mfa"]
    assert claims(third["access_token"])["sub"] == user["id"]

    # Both credentials listed, each used once since it was registered.
    listed = browser.expect(
        await browser.call("GET", "/mfa/webauthn/credentials", token=third["access_token"]),
        200,
        "credentials",
    )
    by_id = {item["id"]: item for item in listed["items"]}
    assert set(by_id) == {key_id, passkey_id}, listed
    assert by_id[key_id]["name"] == "browser key", listed
    assert by_id[key_id]["passkey"] is False, listed
    assert by_id[key_id]["transports"] == ["usb"], listed
    assert by_id[passkey_id]["name"] == "browser passkey", listed
    assert by_id[passkey_id]["passkey"] is True, listed
    assert by_id[passkey_id]["transports"] == ["internal"], listed
    assert all(item["last_used_at"] is not None for item in listed["items"]), listed
    overview = browser.expect(
        await browser.call("GET", "/mfa", token=third["access_token"]), 200, "GET /mfa"
    )
    assert overview["mfa_enabled"] is True, overview
    assert overview["webauthn"] == {"credentials": 2}, overview
