"""mfa_verify.fastapi in an app of the test's own, against the real mfa-service."""

# No `from __future__ import annotations`: the routes below are defined in a function, and
# FastAPI must see their `Depends(...)` annotations as objects, not strings naming locals.

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from mfa_verify import AccessClaims, Verifier
from mfa_verify.errors import InsufficientAuthentication
from mfa_verify.fastapi import MfaAuth, install_error_handlers

from tests.support import PASSWORD, FakeClock, bearer, totp_code
from tests.verifier.support import (
    Issuer,
    backup_code_login,
    parse_bearer_challenge,
    password_only_token,
    totp_login,
)


def protected_app(verifier: Verifier, *, handlers: bool) -> FastAPI:
    """A Verifier bound directly (no lifespan), every flavour of dependency on one route each."""
    auth = MfaAuth(verifier)
    app = FastAPI()
    if handlers:
        install_error_handlers(app)

    @app.get("/user")
    async def user(claims: Annotated[AccessClaims, Depends(auth.require_user())]) -> str:
        return claims.sub

    @app.get("/any-factor")
    async def any_factor(
        claims: Annotated[AccessClaims, Depends(auth.require_mfa(max_age=None))],
    ) -> list[str]:
        return sorted(claims.amr)

    @app.get("/recent-factor")
    async def recent_factor(
        claims: Annotated[AccessClaims, Depends(auth.require_mfa())],
    ) -> str:
        return claims.sid

    @app.get("/recent-otp")
    async def recent_otp(
        claims: Annotated[
            AccessClaims, Depends(auth.require_mfa(max_age=60, methods={"otp", "hwk"}))
        ],
    ) -> str:
        return claims.sid

    return app


@asynccontextmanager
async def serving(issuer: Issuer, *, handlers: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    async with issuer.verifier() as (verifier, _):
        transport = httpx.ASGITransport(app=protected_app(verifier, handlers=handlers))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc.test") as client:
            yield client


async def test_dependencies(issuer: Issuer, clock: FakeClock) -> None:
    user = await totp_login(issuer.client, clock)
    recovery = await backup_code_login(issuer.client, user)
    password = await password_only_token(issuer.client)
    async with serving(issuer) as svc:
        assert (await svc.get("/user", headers=bearer(password))).status_code == 200
        assert (await svc.get("/any-factor", headers=bearer(password))).status_code == 401
        r = await svc.get("/any-factor", headers=bearer(recovery))
        assert r.json() == ["mfa", "pwd", "recovery"]
        assert (await svc.get("/recent-otp", headers=bearer(recovery))).status_code == 401
        assert (await svc.get("/recent-otp", headers=bearer(user.access_token))).status_code == 200
        clock.advance(61)
        stale = await svc.get("/recent-otp", headers=bearer(user.access_token))
        assert stale.status_code == 401
        assert parse_bearer_challenge(stale.headers["www-authenticate"]) == {
            "error": "insufficient_user_authentication",
            "error_description": "A more recent authentication is required",
            "max_age": "60",
        }
        assert stale.json()["methods"] == ["hwk", "otp"]
        # No max_age: age does not matter, and the challenge carries none.
        assert (await svc.get("/any-factor", headers=bearer(user.access_token))).status_code == 200
        no_mfa = await svc.get("/any-factor", headers=bearer(password))
        assert parse_bearer_challenge(no_mfa.headers["www-authenticate"]) == {
            "error": "insufficient_user_authentication",
            "error_description": "A second factor is required",
        }
        assert "max_age" not in no_mfa.json()
        assert "methods" not in no_mfa.json()


async def test_without_the_handlers_fastapi_renders_detail(issuer: Issuer) -> None:
    """Same status and challenge; FastAPI's own body instead of problem+json."""
    password = await password_only_token(issuer.client)
    async with serving(issuer, handlers=False) as svc:
        r = await svc.get("/recent-otp", headers=bearer(password))
        assert r.status_code == 401
        assert r.headers["content-type"] == "application/json"
        assert r.json() == {
            "detail": "A second factor is required: prove it at the token issuer "
            "(mfa-service: POST /mfa/step-up) and retry with the new access token."
        }
        assert parse_bearer_challenge(r.headers["www-authenticate"])["max_age"] == "60"
        missing = await svc.get("/user")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"


async def test_openapi_declares_the_bearer_scheme(issuer: Issuer) -> None:
    async with serving(issuer) as svc:
        schema = (await svc.get("/openapi.json")).json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "An access token from mfa-service.",
    }
    assert schema["paths"]["/recent-otp"]["get"]["security"] == [{"HTTPBearer": []}]


def test_require_mfa_needs_a_method_or_none() -> None:
    auth = MfaAuth(Verifier("http://mfa.test", "aud"))
    with pytest.raises(ValueError, match="methods"):
        auth.require_mfa(methods=set())


async def test_a_remembered_device_is_no_factor(issuer: Issuer, clock: FakeClock) -> None:
    """A login that skipped the challenge on a remembered device: amr [pwd, mfa, device]. It
    is multi-factor for a service that asks nothing more, but proves no factor now: a demand
    for otp or hwk, or for a recent factor, answers 401 and the client steps up."""
    user = await totp_login(issuer.client, clock)
    r = await issuer.client.post("/auth/login", json={"email": user.email, "password": PASSWORD})
    clock.advance(30)
    answered = await issuer.client.post(
        "/mfa/challenge",
        json={
            "challenge_token": r.json()["challenge_token"],
            "code": totp_code(user.secret, clock),
            "remember_device": True,
        },
    )
    assert answered.status_code == 200, answered.text
    r = await issuer.client.post(
        "/auth/login",
        json={
            "email": user.email,
            "password": PASSWORD,
            "device_token": answered.json()["device_token"],
        },
    )
    device_login = r.json()["access_token"]
    async with serving(issuer) as svc:
        r = await svc.get("/any-factor", headers=bearer(device_login))
        assert r.json() == ["device", "mfa", "pwd"]
        for path in ("/recent-factor", "/recent-otp"):
            refused = await svc.get(path, headers=bearer(device_login))
            assert refused.status_code == 401, path
            challenge = parse_bearer_challenge(refused.headers["www-authenticate"])
            assert challenge["error"] == "insufficient_user_authentication"
        # The control: the TOTP login meets the recent-factor demand.
        assert (
            await svc.get("/recent-factor", headers=bearer(user.access_token))
        ).status_code == 200
    async with issuer.verifier() as (verifier, _):
        claims = await verifier.verify(device_login)
        verifier.require(claims)  # no demand beyond `mfa`
        # A demand for `device` itself is no way round it: it is no method.
        with pytest.raises(InsufficientAuthentication):
            verifier.require(claims, methods={"device"})
        with pytest.raises(InsufficientAuthentication):
            verifier.require(claims, max_age=3600)
