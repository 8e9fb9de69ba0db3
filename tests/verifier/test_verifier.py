"""mfa_verify.Verifier against tokens minted by the real mfa-service."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from mfa_verify import (
    AccessClaims,
    InsufficientAuthentication,
    InvalidToken,
    VerificationError,
    Verifier,
)

from tests.support import Backend, FakeClock, bearer, settings_for, totp_code
from tests.verifier.support import (
    Issuer,
    b64,
    backup_code_login,
    foreign_key,
    forge,
    password_only_token,
    running_issuer,
    step_up,
    totp_login,
    unsigned,
)


async def refused(verifier: Verifier, token: str) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        await verifier.verify(token)
    # Nothing of the token in what a handler might log.
    for text in (str(caught.value), repr(caught.value), caught.value.reason):
        for part in token.split("."):
            assert len(part) < 8 or part not in text
    return caught.value


@pytest.mark.parametrize("algorithm", ["ES256", "EdDSA", "RS256"])
async def test_verifies_tokens_of_every_algorithm(
    backend: Backend, clock: FakeClock, algorithm: str
) -> None:
    async with (
        running_issuer(settings_for(backend, jwt_algorithm=algorithm), clock) as issuer,
        issuer.verifier() as (verifier, _),
    ):
        token = await password_only_token(issuer.client)
        claims = await verifier.verify(token)
        me = (await issuer.client.get("/users/me", headers=bearer(token))).json()
        payload = jwt.decode(token, options={"verify_signature": False})
        assert claims == AccessClaims(
            sub=me["id"],
            sid=payload["sid"],
            jti=payload["jti"],
            iat=int(clock.time()),
            nbf=int(clock.time()),
            exp=int(clock.time()) + 900,
            auth_time=int(clock.time()),
            amr=frozenset({"pwd"}),
            raw=payload,
        )
        assert claims.raw == payload
        assert not claims.mfa
        assert claims.age(clock.time()) == 0
        assert claims.expires_in(clock.time()) == 900


async def test_claims_are_frozen(issuer: Issuer) -> None:
    async with issuer.verifier() as (verifier, _):
        claims = await verifier.verify(await password_only_token(issuer.client))
    with pytest.raises(dataclasses.FrozenInstanceError):
        claims.sub = "someone else"  # type: ignore[misc]
    with pytest.raises(TypeError):
        claims.raw["sub"] = "someone else"  # type: ignore[index]


async def test_require_mfa_methods_and_max_age(issuer: Issuer, clock: FakeClock) -> None:
    async with issuer.verifier() as (verifier, _):
        password_only = await verifier.verify(await password_only_token(issuer.client))
        with pytest.raises(InsufficientAuthentication) as no_mfa:
            verifier.require(password_only)
        assert no_mfa.value.reason == "a second factor is required"

        user = await totp_login(issuer.client, clock)
        claims = await verifier.verify(user.access_token)
        assert claims.amr == {"pwd", "mfa", "otp"}
        assert claims.mfa
        verifier.require(claims)
        verifier.require(claims, max_age=300, methods={"otp"})
        verifier.require(claims, max_age=300, methods={"otp", "hwk"})
        with pytest.raises(InsufficientAuthentication) as wrong_method:
            verifier.require(claims, methods={"hwk"})
        assert wrong_method.value.methods == frozenset({"hwk"})
        assert wrong_method.value.max_age is None

        clock.advance(300)
        verifier.require(claims, max_age=300, methods={"otp"})
        clock.advance(1)
        with pytest.raises(InsufficientAuthentication) as stale:
            verifier.require(claims, max_age=300, methods={"otp"})
        assert stale.value.max_age == 300
        assert stale.value.reason == "a more recent authentication is required"
        verifier.require(claims, max_age=None)
        with pytest.raises(InsufficientAuthentication):
            await verifier.verify_mfa(user.access_token, max_age=300)

        fresh = await step_up(
            issuer.client, user.access_token, {"code": totp_code(user.secret, clock)}
        )
        stepped = await verifier.verify_mfa(fresh, max_age=300, methods={"otp"})
        assert stepped.sid == claims.sid
        assert stepped.auth_time == int(clock.time())

        recovery = await verifier.verify(await backup_code_login(issuer.client, user))
        assert recovery.amr == {"pwd", "mfa", "recovery"}
        verifier.require(recovery, max_age=300)
        with pytest.raises(InsufficientAuthentication):
            verifier.require(recovery, max_age=300, methods={"otp"})


async def test_expiry_with_leeway(issuer: Issuer, clock: FakeClock) -> None:
    token = await password_only_token(issuer.client)
    async with (
        issuer.verifier() as (verifier, _),
        issuer.verifier(leeway=0) as (strict, _),
    ):
        clock.advance(899)
        await strict.verify(token)
        clock.advance(1)
        assert (await refused(strict, token)).reason == "expired"
        clock.advance(29)
        await verifier.verify(token)  # within the default 30 s of clock skew
        clock.advance(1)
        assert (await refused(verifier, token)).reason == "expired"


async def test_every_claim_is_checked(issuer: Issuer, clock: FakeClock) -> None:
    """Tokens signed with the issuer's real key that differ in one claim or header field."""
    now = int(clock.time())
    async with issuer.verifier() as (verifier, _):
        await verifier.verify(await issuer.sign(issuer.claims()))  # the control
        # aud may be a list holding ours (RFC 7519 section 4.1.3).
        await verifier.verify(await issuer.sign(issuer.claims(aud=["other", "mfa-test-clients"])))
        await verifier.verify(await issuer.sign(issuer.claims(nbf=now + 29)))  # leeway
        cases: list[tuple[dict[str, Any], dict[str, Any], str]] = [
            ({}, {"typ": "JWT"}, "not an access token"),
            ({}, {"typ": None}, "not an access token"),  # no typ at all
            ({}, {"typ": "application/jwt"}, "not an access token"),
            ({"iss": "http://evil.test"}, {}, "wrong issuer"),
            ({"aud": "another-service"}, {}, "wrong audience"),
            ({"aud": ["another-service"]}, {}, "wrong audience"),
            ({"nbf": now + 31}, {}, "issued in the future"),
            ({"iat": now + 31}, {}, "issued in the future"),
            ({"auth_time": now + 31}, {}, "issued in the future"),
            ({"exp": now - 31}, {}, "expired"),
            ({"amr": "pwd mfa otp"}, {}, "malformed amr"),
            ({"amr": ["pwd", 1]}, {}, "malformed amr"),
            ({"exp": "never"}, {}, "malformed exp"),
            ({"auth_time": True}, {}, "malformed auth_time"),
            ({"sid": 7}, {}, "malformed sid"),
            ({"sub": ""}, {}, "malformed sub"),
            ({"sub": 42}, {}, "malformed token"),  # PyJWT checks that sub is a string
        ]
        for claim in ("iss", "aud", "sub", "iat", "nbf", "exp", "jti", "auth_time", "amr", "sid"):
            cases.append(({claim: None}, {}, "a required claim is missing"))
        for claims, header, reason in cases:
            token = await issuer.sign(issuer.claims(**claims), **header)
            assert (await refused(verifier, token)).reason == reason, (claims, header)


async def test_forgeries_are_refused(issuer: Issuer) -> None:
    token = await password_only_token(issuer.client)
    header = jwt.get_unverified_header(token)
    payload = jwt.decode(token, options={"verify_signature": False})
    jwks = (await issuer.client.get("/.well-known/jwks.json")).json()
    jwk = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def hs256(secret: bytes) -> str:
        signing_input = unsigned({**header, "alg": "HS256"}, payload).rsplit(".", 1)[0]
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{b64(mac)}"

    head, body, signature = token.split(".")
    other_sub = b64(json.dumps({**payload, "sub": "someone-else"}).encode())
    attacks = {
        "algorithm not allowed": [
            unsigned({**header, "alg": "none"}, payload),
            unsigned({**header, "alg": "None"}, payload),
            hs256(public_pem),
            hs256(json.dumps(jwk).encode()),
        ],
        "bad signature": [
            f"{head}.{other_sub}.{signature}",
            f"{head}.{body}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}",
            forge(foreign_key(), payload, kid=header["kid"]),
        ],
        "unknown key id": [forge(foreign_key(), payload)],
        "malformed token": ["", "garbage", "a.b.c", f"{head}.{body}", "x" * 9000],
        "no key id": [unsigned({"alg": "ES256", "typ": "at+jwt"}, payload, b"x" * 64)],
    }
    async with issuer.verifier() as (verifier, _):
        await verifier.verify(token)
        for reason, tokens in attacks.items():
            for forged in tokens:
                error = await refused(verifier, forged)
                assert error.reason == reason, forged
                assert isinstance(error, VerificationError)


async def test_an_rs256_key_cannot_verify_an_es256_header(
    backend: Backend, clock: FakeClock
) -> None:
    """The algorithm comes from the JWK: a token claiming another one for that kid fails."""
    async with (
        running_issuer(settings_for(backend, jwt_algorithm="RS256"), clock) as issuer,
        issuer.verifier() as (verifier, _),
    ):
        ring = await issuer.services.keys.ring()
        mine = forge(foreign_key(), issuer.claims(), kid=ring.signing_kid)
        assert jwt.get_unverified_header(mine)["alg"] == "ES256"
        assert (await refused(verifier, mine)).reason == "algorithm does not match the key"


async def test_issuer_and_audience_are_pinned(issuer: Issuer) -> None:
    token = await password_only_token(issuer.client)
    async with (
        issuer.verifier(audience="another-service") as (other_audience, _),
        issuer.verifier(issuer="http://mfa.test/") as (trailing_slash, _),
        issuer.verifier(
            issuer="http://evil.test", jwks_url="http://mfa.test/.well-known/jwks.json"
        ) as (other_issuer, _),
    ):
        assert (await refused(other_audience, token)).reason == "wrong audience"
        assert (await refused(other_issuer, token)).reason == "wrong issuer"
        await trailing_slash.verify(token)  # as the server, the configured `/` is dropped


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="algorithms"):
        Verifier("http://mfa.test", "aud", algorithms={"HS256"})
    with pytest.raises(ValueError, match="algorithms"):
        Verifier("http://mfa.test", "aud", algorithms=set())
    with pytest.raises(ValueError, match="required"):
        Verifier("", "aud")
