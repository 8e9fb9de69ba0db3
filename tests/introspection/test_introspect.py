"""RFC 7662 introspection: only configured service clients; active means really active."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from urllib.parse import quote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    mfa_user,
    registered_login,
    running_app,
    settings_for,
    totp_code,
    unreachable_redis_url,
)

pytestmark = pytest.mark.redis_cluster

CLIENT_ID = "withdrawals"
SECRET = "s3cret-for-the-withdrawals-service:with+odd/chars"
CLIENTS = f"{CLIENT_ID}:{SECRET},reports:another-secret-of-enough-length"


def basic(client_id: str, secret: str) -> dict[str, str]:
    # RFC 6749 2.3.1: each half form-urlencoded, then Basic.
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return {"Authorization": "Basic " + base64.b64encode(pair).decode()}


async def introspect(client: httpx.AsyncClient, token: str, secret: str = SECRET) -> httpx.Response:
    return await client.post(
        "/oauth/introspect", data={"token": token}, headers=basic(CLIENT_ID, secret)
    )


@pytest.fixture
async def client(backend: Backend, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    settings = settings_for(backend, introspection_clients=CLIENTS, login_ip_max_failures=5)
    async with running_app(settings, clock) as c:
        yield c


async def test_active_token_answers_its_claims(client: httpx.AsyncClient, clock: FakeClock) -> None:
    user = await mfa_user(client, clock)
    r = await client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    challenge_token = r.json()["challenge_token"]
    r = await client.post(
        "/mfa/challenge",
        json={"challenge_token": challenge_token, "code": totp_code(user.secret, clock)},
    )
    token = r.json()["access_token"]
    claims = jwt.decode(token, options={"verify_signature": False})

    r = await introspect(client, token)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["active"] is True
    assert body["token_type"] == "Bearer"
    for name in ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "auth_time", "amr", "sid"):
        assert body[name] == claims[name], name
    assert body["amr"] == ["pwd", "mfa", "otp"]


async def test_client_secret_post_works_too(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"], "client_id": CLIENT_ID, "client_secret": SECRET},
    )
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True
    assert r.json()["amr"] == ["pwd"]


async def test_expired_token_is_inactive(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, tokens = await registered_login(client)
    clock.advance(899)
    assert (await introspect(client, tokens["access_token"])).json()["active"] is True
    clock.advance(1)
    r = await introspect(client, tokens["access_token"])
    assert r.status_code == 200
    assert r.json() == {"active": False}


async def test_logged_out_token_and_its_session_are_inactive(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.post("/auth/logout", headers=bearer(tokens["access_token"]))
    assert r.status_code == 204
    assert (await introspect(client, tokens["access_token"])).json() == {"active": False}


async def test_token_of_a_session_ended_elsewhere_is_inactive(client: httpx.AsyncClient) -> None:
    """A password change from another session: the first one's token is dead at once."""
    email, first = await registered_login(client)
    second = (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    r = await client.post(
        "/auth/password",
        headers=bearer(second["access_token"]),
        json={"current_password": PASSWORD, "new_password": "a whole new passphrase 42"},
    )
    assert r.status_code == 204, r.text
    assert (await introspect(client, first["access_token"])).json() == {"active": False}
    assert (await introspect(client, second["access_token"])).json()["active"] is True


async def test_token_of_a_session_the_user_ended_is_inactive(client: httpx.AsyncClient) -> None:
    email, first = await registered_login(client)
    second = (await client.post("/auth/login", json={"email": email, "password": PASSWORD})).json()
    items = (await client.get("/users/me/sessions", headers=bearer(second["access_token"]))).json()
    (old,) = [i for i in items["items"] if not i["current"]]
    assert (await introspect(client, first["access_token"])).json()["active"] is True
    r = await client.delete(
        f"/users/me/sessions/{old['id']}", headers=bearer(second["access_token"])
    )
    assert r.status_code == 204
    assert (await introspect(client, first["access_token"])).json() == {"active": False}
    assert (await introspect(client, second["access_token"])).json()["active"] is True


async def test_forged_and_foreign_tokens_are_inactive(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    real = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(tokens["access_token"])
    own_key = ec.generate_private_key(ec.SECP256R1())
    forged_same_kid = jwt.encode(real, own_key, algorithm="ES256", headers=header)
    forged_new_kid = jwt.encode(
        real, own_key, algorithm="ES256", headers={**header, "kid": "made-up"}
    )
    head, payload, signature = tokens["access_token"].split(".")
    tampered = f"{head}.{payload[:-2]}AA.{signature}"
    for token in (
        forged_same_kid,
        forged_new_kid,
        tampered,
        "not a token",
        tokens["refresh_token"],
    ):
        r = await introspect(client, token)
        assert r.status_code == 200, r.text
        assert r.json() == {"active": False}


async def test_wrong_or_missing_client_credentials_are_refused(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    token = tokens["access_token"]
    attempts = [
        basic(CLIENT_ID, SECRET[:-1]),
        basic(CLIENT_ID, "another-secret-of-enough-length"),  # the other client's secret
        basic("nobody", SECRET),
        {},
    ]
    bodies = []
    for headers in attempts:
        r = await client.post("/oauth/introspect", data={"token": token}, headers=headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == 'Basic realm="mfa-service"'
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["error"] == "invalid_client"
        assert SECRET not in r.text
        assert token not in r.text
        bodies.append(r.content)
    # Unknown client and wrong secret look the same.
    assert len(set(bodies)) == 1


async def test_guessing_client_secrets_is_rate_limited(client: httpx.AsyncClient) -> None:
    """Concurrent guesses: the limit (5 per IP here) holds, then even the right secret waits."""
    guesses = await asyncio.gather(
        *(
            client.post("/oauth/introspect", data={"token": "x"}, headers=basic(CLIENT_ID, f"{i}"))
            for i in range(12)
        )
    )
    statuses = sorted(r.status_code for r in guesses)
    assert statuses == [401] * 5 + [429] * 7, statuses
    r = await introspect(client, "x")
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0


async def test_missing_token_is_an_invalid_request(client: httpx.AsyncClient) -> None:
    r = await client.post("/oauth/introspect", data={}, headers=basic(CLIENT_ID, SECRET))
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request"


async def test_no_clients_configured_refuses_everyone(backend: Backend, clock: FakeClock) -> None:
    async with running_app(settings_for(backend), clock) as c:
        r = await c.post(
            "/oauth/introspect",
            data={"token": "x", "client_id": "", "client_secret": ""},
        )
        assert r.status_code == 401
        assert r.json()["code"] == "invalid_client"


async def test_redis_down_answers_503_not_inactive(backend: Backend, clock: FakeClock) -> None:
    """Fail closed: without Redis nobody can tell whether a token was logged out."""
    unreachable = unreachable_redis_url(backend)
    settings = settings_for(backend, introspection_clients=CLIENTS, redis_url=unreachable)
    async with running_app(settings, clock) as c:
        r = await introspect(c, "x")
        assert r.status_code == 503
        assert r.json()["code"] == "service_unavailable"


async def test_discovery_names_the_introspection_endpoint(client: httpx.AsyncClient) -> None:
    body = (await client.get("/.well-known/openid-configuration")).json()
    assert body["introspection_endpoint"] == "http://mfa.test/oauth/introspect"
    assert "client_secret_basic" in body["introspection_endpoint_auth_methods_supported"]
