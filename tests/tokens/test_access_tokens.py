from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from tests.support import (
    Backend,
    FakeClock,
    bearer,
    login,
    new_email,
    register,
    registered_login,
    running_app,
    settings_for,
)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Any = None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64(signature)}"


async def verify_with_jwks(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """What a downstream service does: nothing but the JWKS document and PyJWT."""
    jwks = (await client.get("/.well-known/jwks.json")).json()
    kid = jwt.get_unverified_header(token)["kid"]
    jwk = next(k for k in jwks["keys"] if k["kid"] == kid)
    key = jwt.PyJWK(jwk)
    claims: dict[str, Any] = jwt.decode(
        token, key, algorithms=[jwk["alg"]], audience="mfa-test-clients", issuer="http://mfa.test"
    )
    return claims


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
async def test_token_verifies_from_the_jwks_alone(backend: Backend, algorithm: str) -> None:
    async with running_app(settings_for(backend, jwt_algorithm=algorithm)) as client:
        _, tokens = await registered_login(client)
        header = jwt.get_unverified_header(tokens["access_token"])
        assert header["alg"] == algorithm
        assert header["typ"] == "at+jwt"
        claims = await verify_with_jwks(client, tokens["access_token"])
        me = (await client.get("/users/me", headers=bearer(tokens["access_token"]))).json()
        assert set(claims) == {
            "iss",
            "aud",
            "sub",
            "iat",
            "nbf",
            "exp",
            "jti",
            "auth_time",
            "amr",
            "sid",
        }
        assert claims["sub"] == me["id"]
        assert claims["amr"] == ["pwd"]
        assert claims["exp"] - claims["iat"] == 900
        jwks = (await client.get("/.well-known/jwks.json")).json()
        for key in jwks["keys"]:
            assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private part published"


async def test_discovery_names_the_jwks(client: httpx.AsyncClient) -> None:
    doc = (await client.get("/.well-known/openid-configuration")).json()
    assert doc["issuer"] == "http://mfa.test"
    assert doc["jwks_uri"] == "http://mfa.test/.well-known/jwks.json"
    # Every amr value a token can carry (RFC 8176), security keys and passkeys included.
    assert set(doc["amr_values_supported"]) == {
        "pwd",
        "mfa",
        "otp",
        "recovery",
        "hwk",
        "swk",
        "device",
    }


async def test_alg_none_and_hmac_with_the_public_key_are_refused(
    client: httpx.AsyncClient,
) -> None:
    _, tokens = await registered_login(client)
    header = jwt.get_unverified_header(tokens["access_token"])
    payload = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    jwks = (await client.get("/.well-known/jwks.json")).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    attacks = [
        forge({**header, "alg": "none"}, payload),
        forge(
            {**header, "alg": "HS256"},
            payload,
            lambda m: hmac.new(public_pem, m, hashlib.sha256).digest(),
        ),
        forge(
            {**header, "alg": "HS256"},
            payload,
            lambda m: hmac.new(json.dumps(jwk).encode(), m, hashlib.sha256).digest(),
        ),
    ]
    for token in attacks:
        r = await client.get("/users/me", headers=bearer(token))
        assert r.status_code == 401, token
        assert r.json()["code"] == "invalid_token"


async def test_tampered_and_garbage_tokens_are_refused(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    head, body, sig = tokens["access_token"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=="))
    _, other = await registered_login(client)
    other_sub = jwt.decode(other["access_token"], options={"verify_signature": False})["sub"]
    tampered = f"{head}.{b64(json.dumps({**payload, 'sub': other_sub}).encode())}.{sig}"
    flipped = f"{head}.{body}.{sig[:-4]}{'AAAA' if sig[-4:] != 'AAAA' else 'BBBB'}"
    for token in (tampered, flipped, "garbage", "a.b.c", ""):
        r = await client.get("/users/me", headers=bearer(token))
        assert r.status_code == 401
    no_scheme = await client.get("/users/me", headers={"Authorization": tokens["access_token"]})
    assert no_scheme.status_code == 401


async def test_expired_token_is_refused(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, tokens = await registered_login(client)
    clock.advance(899)
    assert (
        await client.get("/users/me", headers=bearer(tokens["access_token"]))
    ).status_code == 200
    clock.advance(2)
    r = await client.get("/users/me", headers=bearer(tokens["access_token"]))
    assert r.status_code == 401


async def test_token_from_the_future_is_refused(backend: Backend) -> None:
    future = FakeClock()
    future.advance(3600)
    email = new_email()
    async with running_app(settings_for(backend), future) as ahead:
        await register(ahead, email)
        tokens = await login(ahead, email)
    async with running_app(settings_for(backend)) as client:
        r = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert r.status_code == 401


@pytest.mark.parametrize(
    ("field", "value"), [("audience", "another-audience"), ("issuer", "http://evil.test")]
)
async def test_wrong_audience_or_issuer_is_refused(
    backend: Backend, field: str, value: str
) -> None:
    """Same keys, same database: only the claim differs."""
    email = new_email()
    async with running_app(settings_for(backend, **{field: value})) as other:
        await register(other, email)
        tokens = await login(other, email)
        assert (
            await other.get("/users/me", headers=bearer(tokens["access_token"]))
        ).status_code == 200
    async with running_app(settings_for(backend)) as client:
        r = await client.get("/users/me", headers=bearer(tokens["access_token"]))
        assert r.status_code == 401


async def test_refresh_token_is_not_an_access_token(client: httpx.AsyncClient) -> None:
    _, tokens = await registered_login(client)
    r = await client.get("/users/me", headers=bearer(tokens["refresh_token"]))
    assert r.status_code == 401


async def test_restart_keeps_accounts_and_tokens(tmp_path: Path, redis_url: str | None) -> None:
    """The embedded default: SQLite and keys generated into the data dir on first start."""
    settings = settings_for(
        Backend("embedded", "", redis_url, tmp_path, ""),
        database_url=None,
        data_key=None,
    )
    email = new_email()
    async with running_app(settings) as first:
        await register(first, email)
        tokens = await login(first, email)
        logged_out = await login(first, email)
        assert (
            await first.post("/auth/logout", headers=bearer(logged_out["access_token"]))
        ).status_code == 204
        jwks_before = (await first.get("/.well-known/jwks.json")).json()
    assert (tmp_path / "mfa.db").exists()
    assert (tmp_path / "data.key").exists()
    async with running_app(
        settings.model_copy(update={"redis_prefix": "mfa-test-restart:"})
    ) as second:
        assert (await second.get("/.well-known/jwks.json")).json() == jwks_before
        me = await second.get("/users/me", headers=bearer(tokens["access_token"]))
        assert me.status_code == 200
        refreshed = await second.post(
            "/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        # Redis was replaced (a new prefix), yet the logged-out session stays out.
        gone = await second.get("/users/me", headers=bearer(logged_out["access_token"]))
        assert gone.status_code == 401
        await login(second, email)
