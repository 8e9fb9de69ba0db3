"""The WebAuthn calls a client makes, with the software authenticator as its browser."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from tests.support import bearer, login, registered_login
from tests.webauthn.authenticator import SoftAuthenticator

ORIGIN = "http://mfa.test"  # the test settings' issuer: RP ID mfa.test, this origin


async def creation_options(
    client: httpx.AsyncClient, token: str, *, passkey: bool = False
) -> dict[str, Any]:
    r = await client.post(
        "/mfa/webauthn/registrations/options", headers=bearer(token), json={"passkey": passkey}
    )
    assert r.status_code == 200, r.text
    options: dict[str, Any] = r.json()
    return options


async def post_registration(
    client: httpx.AsyncClient, token: str, credential: dict[str, Any], name: str = "key"
) -> httpx.Response:
    return await client.post(
        "/mfa/webauthn/registrations",
        headers=bearer(token),
        json={"credential": credential, "name": name},
    )


async def register_key(
    client: httpx.AsyncClient,
    token: str,
    authenticator: SoftAuthenticator,
    *,
    passkey: bool = False,
    name: str = "key",
) -> dict[str, Any]:
    """Options → navigator.credentials.create() → registration: the 201 body."""
    options = await creation_options(client, token, passkey=passkey)
    r = await post_registration(client, token, authenticator.create(options), name)
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


@dataclass
class KeyUser:
    email: str
    access_token: str  # the session that registered the key
    authenticator: SoftAuthenticator
    backup_codes: list[str]


async def key_user(
    client: httpx.AsyncClient, authenticator: SoftAuthenticator | None = None, **register: Any
) -> KeyUser:
    """A new user whose only second factor is a security key (MFA on)."""
    authenticator = authenticator or SoftAuthenticator(origin=ORIGIN)
    email, tokens = await registered_login(client)
    body = await register_key(client, tokens["access_token"], authenticator, **register)
    return KeyUser(email, tokens["access_token"], authenticator, body["backup_codes"])


async def key_challenge(client: httpx.AsyncClient, email: str) -> tuple[str, dict[str, Any]]:
    """Password login: the challenge token and its WebAuthn request options."""
    body = await login(client, email)
    assert body["status"] == "mfa_required", body
    assert "webauthn" in body["methods"], body
    token: str = body["challenge_token"]
    options: dict[str, Any] = body["webauthn"]
    return token, options


async def answer(
    client: httpx.AsyncClient, token: str, assertion: dict[str, Any]
) -> httpx.Response:
    return await client.post(
        "/mfa/challenge", json={"challenge_token": token, "webauthn": assertion}
    )


async def key_login(client: httpx.AsyncClient, user: KeyUser) -> dict[str, Any]:
    """Password, then the security key: the TokenResponse."""
    token, options = await key_challenge(client, user.email)
    r = await answer(client, token, user.authenticator.get(options))
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def step_up_options(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/mfa/step-up/options", headers=bearer(token))


async def passkey_options(client: httpx.AsyncClient) -> dict[str, Any]:
    r = await client.post("/auth/passkey/options")
    assert r.status_code == 200, r.text
    options: dict[str, Any] = r.json()
    return options


async def passkey_login(client: httpx.AsyncClient, assertion: dict[str, Any]) -> httpx.Response:
    return await client.post("/auth/passkey", json={"credential": assertion})
