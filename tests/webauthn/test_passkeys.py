"""Passwordless login with a passkey: a discoverable credential that verified its user."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import jwt
import pytest

from tests.support import Backend, FakeClock, bearer, running_app, settings_for
from tests.webauthn.authenticator import SoftAuthenticator, tamper_signature
from tests.webauthn.flows import (
    ORIGIN,
    KeyUser,
    key_login,
    key_user,
    passkey_login,
    passkey_options,
    register_key,
)

pytestmark = pytest.mark.redis_cluster


def amr(tokens: dict[str, Any]) -> list[str]:
    claims: dict[str, Any] = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    result: list[str] = claims["amr"]
    return result


async def passkey_user(client: httpx.AsyncClient, **authenticator: Any) -> KeyUser:
    device = SoftAuthenticator(origin=ORIGIN, **authenticator)
    return await key_user(client, device, passkey=True)


async def test_passkey_options_name_no_credential_and_require_verification(
    client: httpx.AsyncClient,
) -> None:
    options = await passkey_options(client)
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["rpId"] == "mfa.test"
    assert options["challenge"] != (await passkey_options(client))["challenge"]


async def test_log_in_with_a_passkey(client: httpx.AsyncClient) -> None:
    user = await passkey_user(client)
    (item,) = (
        await client.get("/mfa/webauthn/credentials", headers=bearer(user.access_token))
    ).json()["items"]
    assert item["passkey"] is True

    r = await passkey_login(client, user.authenticator.get(await passkey_options(client)))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    tokens = r.json()
    assert amr(tokens) == ["hwk", "mfa"]
    me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.json()["email"] == user.email
    # A real session: it refreshes.
    refreshed = await client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text

    synced = await passkey_user(client, backup_eligible=True, backed_up=True, counter_step=0)
    r = await passkey_login(client, synced.authenticator.get(await passkey_options(client)))
    assert r.status_code == 200, r.text
    assert amr(r.json()) == ["swk", "mfa"]


async def test_every_failure_gets_one_answer(client: httpx.AsyncClient) -> None:
    user = await passkey_user(client)
    device = user.authenticator
    security_key = await key_user(client)  # registered as a second factor, not a passkey

    async def refused(assertion: dict[str, Any]) -> dict[str, Any]:
        r = await passkey_login(client, assertion)
        assert r.status_code == 401, r.text
        body: dict[str, Any] = r.json()
        return body

    bodies = [
        # no user verification (the authenticator skipped the PIN)
        await refused(device.get(await passkey_options(client), uv=False)),
        # a forged signature
        await refused(tamper_signature(device.get(await passkey_options(client)))),
        # options this service never gave
        await refused(device.get(await passkey_options(client), challenge="A" * 43)),
        # another origin
        await refused(device.get(await passkey_options(client), origin="http://evil.test")),
        # a credential registered only as a second factor
        await refused(
            security_key.authenticator.get(
                await passkey_options(client),
                credential=security_key.authenticator.credentials[0],
                uv=True,
            )
        ),
    ]
    # Options are single use, right or wrong: a replay of a good assertion is refused too.
    good = device.get(await passkey_options(client))
    assert (await passkey_login(client, good)).status_code == 200
    bodies.append(await refused(good))
    assert all(body == bodies[0] for body in bodies), bodies
    assert bodies[0]["code"] == "invalid_credentials"


async def test_a_passkey_answers_a_challenge_too(
    client: httpx.AsyncClient,
) -> None:
    user = await passkey_user(client)
    tokens = await key_login(client, user)  # password + the passkey as second factor
    assert amr(tokens) == ["pwd", "mfa", "hwk"]


async def test_a_racing_replay_gets_one_session(client: httpx.AsyncClient) -> None:
    user = await passkey_user(client)
    assertion = user.authenticator.get(await passkey_options(client))
    answers = await asyncio.gather(*(passkey_login(client, assertion) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] + [401] * 7


async def test_removing_the_passkey_ends_its_logins(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    user = await passkey_user(client)
    device = user.authenticator
    r = await passkey_login(client, device.get(await passkey_options(client)))
    session = r.json()
    (item,) = (
        await client.get("/mfa/webauthn/credentials", headers=bearer(session["access_token"]))
    ).json()["items"]
    other = await passkey_login(client, device.get(await passkey_options(client)))
    clock.advance(1)
    removed = await client.delete(
        f"/mfa/webauthn/credentials/{item['id']}", headers=bearer(session["access_token"])
    )
    assert removed.status_code == 204, removed.text
    gone = await client.get("/users/me", headers=bearer(other.json()["access_token"]))
    assert gone.status_code == 401
    again = await passkey_login(client, device.get(await passkey_options(client)))
    assert again.status_code == 401
    # Registered again, it works again.
    fresh = SoftAuthenticator(origin=ORIGIN)
    await register_key(client, session["access_token"], fresh, passkey=True)
    r = await passkey_login(client, fresh.get(await passkey_options(client)))
    assert r.status_code == 200, r.text


async def test_per_ip_limits(backend: Backend, clock: FakeClock) -> None:
    settings = settings_for(backend, passkey_options_ip_max=3, login_ip_max_failures=2)
    async with running_app(settings, clock) as client:
        user = await passkey_user(client)
        device = user.authenticator
        for _ in range(3):
            await passkey_options(client)
        limited = await client.post("/auth/passkey/options")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0

    async with running_app(settings, clock, client_ip="198.51.100.9") as client:
        options = [await passkey_options(client) for _ in range(3)]
        for o in options[:2]:
            r = await passkey_login(client, tamper_signature(device.get(o)))
            assert r.status_code == 401
        # Two wrong assertions from this address: the right one is refused until the window ends.
        limited = await passkey_login(client, device.get(options[2]))
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) > 0
