"""Bugs the fuzzer found, each reproduced through HTTP as a client would hit it.

A new finding goes here as a strict xfail until it is fixed; the two below are fixed (a
500 before: py_webauthn's InvalidJSONStructure uncaught; U+0000 in a name on PostgreSQL).

The client here turns an unhandled exception into the 500 a server would answer (the
suite's usual client raises it instead), so each test asserts on the status as a client
sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fuzz.harness import CLIENT
from tests.support import Backend, FakeClock, bearer, registered_login, serving, settings_for
from tests.webauthn.authenticator import SoftAuthenticator
from tests.webauthn.flows import (
    ORIGIN,
    creation_options,
    key_challenge,
    key_login,
    key_user,
    passkey_options,
    post_registration,
    step_up_options,
)


@pytest.fixture
async def http(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings_for(backend), clock) as (app, _):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=CLIENT)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


def odd_attachment(credential: dict[str, Any]) -> dict[str, Any]:
    return credential | {"authenticatorAttachment": "hybrid-ish"}


@pytest.mark.parametrize("route", ["registration", "challenge", "step-up", "passkey"])
async def test_unexpected_authenticator_attachment_is_refused(
    http: httpx.AsyncClient, route: str
) -> None:
    """A credential whose authenticatorAttachment is not one of the two the spec defines is a
    malformed response like any other: refused, never a server error."""
    user = await key_user(http, passkey=True)
    if route == "registration":
        access = (await key_login(http, user))["access_token"]  # recent, with mfa
        options = await creation_options(http, access)
        credential = odd_attachment(SoftAuthenticator(origin=ORIGIN).create(options))
        r = await post_registration(http, access, credential)
    elif route == "challenge":
        token, options = await key_challenge(http, user.email)
        assertion = odd_attachment(user.authenticator.get(options))
        r = await http.post(
            "/mfa/challenge", json={"challenge_token": token, "webauthn": assertion}
        )
    elif route == "step-up":
        access = (await key_login(http, user))["access_token"]
        options = (await step_up_options(http, access)).json()
        assertion = odd_attachment(user.authenticator.get(options))
        r = await http.post("/mfa/step-up", headers=bearer(access), json={"webauthn": assertion})
    else:
        assertion = odd_attachment(user.authenticator.get(await passkey_options(http)))
        r = await http.post("/auth/passkey", json={"credential": assertion})
    assert r.status_code in (401, 422), r.text
    assert r.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("route", ["rename", "registration"])
async def test_a_credential_name_with_a_control_character_is_refused(
    http: httpx.AsyncClient, route: str
) -> None:
    """A name is 1–64 characters without control characters (PostgreSQL text cannot hold
    U+0000 at all): 422, never a 500."""
    name = "key\x00one"
    if route == "rename":
        user = await key_user(http)
        access = (await key_login(http, user))["access_token"]
        listed = await http.get("/mfa/webauthn/credentials", headers=bearer(access))
        credential_id = listed.json()["items"][0]["id"]
        r = await http.patch(
            f"/mfa/webauthn/credentials/{credential_id}",
            headers=bearer(access),
            json={"name": name},
        )
    else:
        _, tokens = await registered_login(http)
        options = await creation_options(http, tokens["access_token"])
        credential = SoftAuthenticator(origin=ORIGIN).create(options)
        r = await post_registration(http, tokens["access_token"], credential, name)
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"
