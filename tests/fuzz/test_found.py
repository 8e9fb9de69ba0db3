"""Bugs the fuzzer found, each reproduced through HTTP as a client would hit it.

Each test is a strict xfail until its bug is fixed: then it passes, fails the run as XPASS,
and its mark goes — together with the matching line in `harness.sidestep_known_bugs`, which
keeps the fuzz run from stumbling over a bug that is already known.

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

ATTACHMENT_BUG = (
    "py_webauthn raises InvalidJSONStructure for an authenticatorAttachment other than "
    "'platform' / 'cross-platform'; ceremony.verify_registration / verify_assertion do not "
    "catch it, so the request ends in a 500 instead of 401 invalid_webauthn_response (or 422)"
)
NUL_BUG = (
    "PostgreSQL text cannot hold U+0000: a credential name with it (valid JSON, '\\u0000') "
    "reaches the UPDATE/INSERT and asyncpg's 'invalid byte sequence for encoding UTF8: 0x00' "
    "ends in a 500; the name should be refused with 422 (or the character dropped)"
)


@pytest.fixture
async def http(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(settings_for(backend), clock) as (app, _):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=CLIENT)
        async with httpx.AsyncClient(transport=transport, base_url=ORIGIN) as client:
            yield client


def odd_attachment(credential: dict[str, Any]) -> dict[str, Any]:
    return credential | {"authenticatorAttachment": "hybrid-ish"}


@pytest.mark.xfail(strict=True, raises=AssertionError, reason=ATTACHMENT_BUG)
@pytest.mark.parametrize("route", ["registration", "challenge", "step-up", "passkey"])
async def test_unexpected_authenticator_attachment_is_refused(
    http: httpx.AsyncClient, route: str
) -> None:
    """A credential whose authenticatorAttachment is not one of the two the spec defines is a
    malformed response like any other: refused, never a server error."""
    user = await key_user(http, passkey=True)
    if route == "registration":
        options = await creation_options(http, user.access_token)
        credential = odd_attachment(SoftAuthenticator(origin=ORIGIN).create(options))
        r = await post_registration(http, user.access_token, credential)
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
async def test_credential_name_with_nul_is_refused_or_stored(
    http: httpx.AsyncClient, backend: Backend, request: pytest.FixtureRequest, route: str
) -> None:
    """A name is any 1–64 characters; one with U+0000 is refused (422) or kept, never a 500."""
    if backend.name == "postgresql":
        request.applymarker(pytest.mark.xfail(strict=True, raises=AssertionError, reason=NUL_BUG))
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
        ok = 200
    else:
        _, tokens = await registered_login(http)
        options = await creation_options(http, tokens["access_token"])
        credential = SoftAuthenticator(origin=ORIGIN).create(options)
        r = await post_registration(http, tokens["access_token"], credential, name)
        ok = 201
    assert r.status_code in (ok, 422), r.text
