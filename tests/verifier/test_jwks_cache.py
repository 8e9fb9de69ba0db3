"""The key cache, counting the requests that reach the real mfa-service's JWKS route."""

from __future__ import annotations

import asyncio

import httpx
import jwt
import pytest
from mfa_verify import InvalidToken, JWKSUnavailable, Verifier
from mfa_verify.jwks import cache_seconds

from tests.support import FakeClock, free_port
from tests.verifier.support import Issuer, foreign_key, forge, password_only_token


async def test_many_verifications_one_fetch(issuer: Issuer) -> None:
    tokens = [await password_only_token(issuer.client) for _ in range(3)]
    async with issuer.verifier() as (verifier, counted):
        # Cold start, 50 at once: they share one fetch.
        await asyncio.gather(*(verifier.verify(tokens[i % 3]) for i in range(50)))
        assert counted.jwks_fetches == 1
        for _ in range(100):
            for token in tokens:
                await verifier.verify(token)
        assert counted.jwks_fetches == 1
        assert verifier.jwks.fetches == 1


async def test_cache_control_max_age_is_honoured(issuer: Issuer, clock: FakeClock) -> None:
    token = await password_only_token(issuer.client)
    r = await issuer.client.get("/.well-known/jwks.json")
    assert r.headers["cache-control"] == "public, max-age=300"
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(token)
        clock.advance(299)
        await verifier.verify(token)
        assert counted.jwks_fetches == 1
        clock.advance(1)  # 300 s: stale
        await asyncio.gather(*(verifier.verify(token) for _ in range(20)))
        assert counted.jwks_fetches == 2
        clock.advance(299)
        await verifier.verify(token)
        assert counted.jwks_fetches == 2


async def test_rotation_mid_run(issuer: Issuer, clock: FakeClock) -> None:
    before = await password_only_token(issuer.client)
    old_kid = jwt.get_unverified_header(before)["kid"]
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(before)
        # The database is shared by the session's tests: keys they retired may be published.
        assert old_kid in verifier.jwks.kids

        new_kid = await issuer.rotate_key()
        assert new_kid not in verifier.jwks.kids
        clock.advance(61)  # the issuer reloads its ring (and signs with the new key) after 60 s
        after = await password_only_token(issuer.client)
        assert jwt.get_unverified_header(after)["kid"] == new_kid

        # The unknown kid makes exactly one refetch; both tokens verify.
        await asyncio.gather(*(verifier.verify(after) for _ in range(10)))
        assert counted.jwks_fetches == 2
        assert {old_kid, new_kid} <= verifier.jwks.kids
        await verifier.verify(before)
        await verifier.verify(after)
        assert counted.jwks_fetches == 2


async def test_forged_kids_cause_at_most_one_refetch_per_interval(
    issuer: Issuer, clock: FakeClock
) -> None:
    token = await password_only_token(issuer.client)
    mine = foreign_key()
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(token)
        assert counted.jwks_fetches == 1

        async def storm(concurrently: bool) -> None:
            forged = [forge(mine, issuer.claims()) for _ in range(50)]
            if concurrently:
                results = await asyncio.gather(
                    *(verifier.verify(t) for t in forged), return_exceptions=True
                )
            else:
                results = []
                for t in forged:
                    try:
                        results.append(await verifier.verify(t))
                    except InvalidToken as exc:
                        results.append(exc)
            assert all(isinstance(r, InvalidToken) for r in results), results
            assert {r.reason for r in results if isinstance(r, InvalidToken)} == {"unknown key id"}

        await storm(concurrently=False)  # within 10 s of the first fetch: none
        assert counted.jwks_fetches == 1
        clock.advance(9)
        await storm(concurrently=True)
        assert counted.jwks_fetches == 1
        clock.advance(1)  # 10 s after the fetch: one refetch for the whole storm
        await storm(concurrently=False)
        assert counted.jwks_fetches == 2
        clock.advance(10)
        await storm(concurrently=True)
        assert counted.jwks_fetches == 3
        # A real key id on a forged signature needs no refetch at all.
        clock.advance(10)
        ring = await issuer.services.keys.ring()
        for _ in range(20):
            with pytest.raises(InvalidToken):
                await verifier.verify(forge(mine, issuer.claims(), kid=ring.signing_kid))
        assert counted.jwks_fetches == 3
        await verifier.verify(token)


async def test_unreachable_issuer_fails_closed(issuer: Issuer, clock: FakeClock) -> None:
    token = await password_only_token(issuer.client)
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(token)
        counted.down = True
        clock.advance(299)
        await verifier.verify(token)  # fresh keys: no I/O, the outage is not noticed
        clock.advance(1)
        with pytest.raises(JWKSUnavailable) as caught:
            await verifier.verify(token)  # stale keys are not used
        assert caught.value.reason == "the issuer is unreachable (ConnectError)"
        assert counted.jwks_fetches == 2
        # Concurrent and later requests within 1 s fail at once, without a new attempt.
        results = await asyncio.gather(
            *(verifier.verify(token) for _ in range(20)), return_exceptions=True
        )
        assert all(isinstance(r, JWKSUnavailable) for r in results)
        clock.advance(0.9)
        with pytest.raises(JWKSUnavailable):
            await verifier.verify(token)
        assert counted.jwks_fetches == 2
        clock.advance(0.1)
        with pytest.raises(JWKSUnavailable):
            await verifier.verify(token)
        assert counted.jwks_fetches == 3
        counted.down = False
        clock.advance(1)
        await verifier.verify(token)
        assert counted.jwks_fetches == 4


async def test_unknown_kid_while_the_issuer_is_down(issuer: Issuer, clock: FakeClock) -> None:
    """Keys fresh, a new kid, the issuer unreachable: the token cannot be judged (503), and
    the next ones within the refetch interval are not judged either."""
    token = await password_only_token(issuer.client)
    unknown = forge(foreign_key(), issuer.claims())
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(token)
        counted.down = True
        clock.advance(10)
        for _ in range(3):
            with pytest.raises(JWKSUnavailable):
                await verifier.verify(unknown)
        assert counted.jwks_fetches == 2
        await verifier.verify(token)  # a known kid still verifies from the fresh cache


async def test_real_network_failures(issuer: Issuer, clock: FakeClock) -> None:
    token = await password_only_token(issuer.client)
    # Connection refused: nothing listens there.
    async with Verifier(
        "http://mfa.test",
        "mfa-test-clients",
        jwks_url=f"http://127.0.0.1:{free_port()}/.well-known/jwks.json",
        time=clock.time,
    ) as nowhere:
        with pytest.raises(JWKSUnavailable, match="unreachable"):
            await nowhere.verify(token)
    # Wrong path: 404; and a document that is not a key set.
    async with (
        issuer.verifier(jwks_url="http://mfa.test/.well-known/nothing") as (missing, _),
        issuer.verifier(jwks_url="http://mfa.test/healthz") as (not_jwks, _),
    ):
        with pytest.raises(JWKSUnavailable, match="HTTP 404"):
            await missing.verify(token)
        with pytest.raises(JWKSUnavailable, match="not a JWKS"):
            await not_jwks.verify(token)


async def test_discovery(issuer: Issuer) -> None:
    token = await password_only_token(issuer.client)
    async with issuer.verifier(discovery=True) as (verifier, counted):
        await verifier.verify(token)
        await verifier.verify(token)
        assert counted.paths == ["/.well-known/openid-configuration", "/.well-known/jwks.json"]
    # The document must name the issuer we trust.
    async with issuer.verifier(issuer="http://other.test", discovery=True) as (other, _):
        with pytest.raises(JWKSUnavailable, match="another issuer"):
            await other.verify(token)


async def test_verification_needs_no_io_while_cached(issuer: Issuer) -> None:
    """What the benchmark relies on: with the keys cached, verify() never yields to the loop
    (so it never waits on the network), and the cache answers synchronously."""
    token = await password_only_token(issuer.client)
    async with issuer.verifier() as (verifier, counted):
        await verifier.verify(token)
        kid = jwt.get_unverified_header(token)["kid"]
        assert verifier.jwks.cached(kid) is not None
        coroutine = verifier.verify(token)
        with pytest.raises(StopIteration) as done:
            coroutine.send(None)  # runs to completion in one step: no await suspended it
        assert done.value.value.jti == jwt.decode(token, options={"verify_signature": False})["jti"]
        assert counted.jwks_fetches == 1


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("public, max-age=300", 300),
        ("max-age=120", 120),
        ('max-age="120"', 120),
        ("MAX-AGE=120, must-revalidate", 120),
        ("max-age=0", 30),  # floor
        ("max-age=5", 30),
        ("max-age=999999", 3600),  # ceiling
        ("no-store", 300),  # default: refetching per token would fail with the issuer
        ("no-cache, max-age=60", 300),
        ("public", 300),
        (None, 300),
        ("", 300),
        ("max-age=-5", 300),
        ("max-age=abc", 300),
        ("max-age=", 300),
    ],
)
def test_cache_seconds(header: str | None, seconds: float) -> None:
    assert cache_seconds(header, default=300, floor=30, ceiling=3600) == seconds


async def test_a_key_set_with_unusable_keys(clock: FakeClock) -> None:
    """Keys without `alg`, with a refused one, for encryption or broken are skipped; the
    good one is used. Served by a stand-in issuer: the real one publishes only good keys."""
    good = foreign_key()
    good_jwk = jwt.PyJWK.from_json(jwt.algorithms.ECAlgorithm.to_jwk(good.public_key()))._jwk_data
    keys = [
        {**good_jwk, "kid": "no-alg"},
        {**good_jwk, "kid": "hmac", "alg": "HS256"},
        {**good_jwk, "kid": "enc", "alg": "ES256", "use": "enc"},
        {**good_jwk, "kid": "broken", "alg": "ES256", "x": "AAAA"},
        {**good_jwk, "kid": "rsa-as-ec", "alg": "RS256"},
        "not a key",
        {**good_jwk, "kid": "good", "alg": "ES256", "use": "sig"},
    ]

    def serve(_: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"keys": keys}, headers={"Cache-Control": "no-store"})

    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(serve)) as http,
        Verifier("http://mfa.test", "mfa-test-clients", http=http, time=clock.time) as verifier,
    ):
        now = int(clock.time())
        claims = {
            "iss": "http://mfa.test",
            "aud": "mfa-test-clients",
            "sub": "u",
            "iat": now,
            "nbf": now,
            "exp": now + 900,
            "jti": "j",
            "auth_time": now,
            "amr": ["pwd"],
            "sid": "s",
        }
        assert (await verifier.verify(forge(good, claims, kid="good"))).sub == "u"
        assert verifier.jwks.kids == {"good"}
        for kid in ("no-alg", "hmac", "enc", "broken", "rsa-as-ec"):
            with pytest.raises(InvalidToken):
                await verifier.verify(forge(good, claims, kid=kid))
        clock.advance(299)  # no-store: the default 300 s
        await verifier.verify(forge(good, claims, kid="good"))
        assert verifier.jwks.fetches == 1
