"""SPEC 4: a flood of tokens naming unknown `kid`s answers 401 and costs each process at most
one key reload at a time, at most one per 5 s; other requests are not slowed.

Before the fix every forged kid ran a reload of its own, concurrently: with RS256 keys (the
slowest to load) and a small connection pool, the forged requests and the genuine one beside
them answered 503."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import event

from mfa_service.app import create_app
from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from mfa_service.tokens.access import ACCESS_TOKEN_TYP
from tests.support import (
    Backend,
    FakeClock,
    bearer,
    clean_redis,
    registered_login,
    settings_for,
)

FLOOD = 100
RELOAD_EVERY = 5.0  # SPEC 4: at most one key reload per 5 s


@asynccontextmanager
async def app_counting_key_reads(
    settings: Settings, clock: FakeClock
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    """The app behind an httpx client, and the list of statements that read `signing_keys`
    (one per key reload), recorded by a listener on the app's own engine."""
    app = create_app(settings, clock)
    reads: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM signing_keys" in statement:
            reads.append(statement)

    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    try:
        async with app.router.lifespan_context(app):
            event.listen(app.state.services.engine.sync_engine, "before_cursor_execute", record)
            async with httpx.AsyncClient(transport=transport, base_url="http://mfa.test") as c:
                yield c, reads
    finally:
        await clean_redis(settings)


def forged_token(attacker: rsa.RSAPrivateKey, clock: FakeClock) -> str:
    """Well-formed, unexpired, signed — by a key of the attacker's, under a kid of their own."""
    issued = int(clock.time())
    claims = {
        "iss": "http://mfa.test",
        "aud": "mfa-test-clients",
        "sub": "00000000-0000-4000-8000-000000000000",
        "iat": issued,
        "nbf": issued,
        "exp": issued + 600,
        "jti": secrets.token_hex(16),
        "auth_time": issued,
        "amr": ["pwd", "mfa", "otp"],
        "sid": "00000000-0000-4000-8000-000000000001",
    }
    headers = {"kid": secrets.token_urlsafe(12), "typ": ACCESS_TOKEN_TYP}
    return jwt.encode(claims, attacker, algorithm="RS256", headers=headers)


async def flood_beside(
    client: httpx.AsyncClient, forged: list[str], genuine: str
) -> tuple[list[httpx.Response], httpx.Response]:
    """Every forged token and the genuine one at once, the genuine one in the middle (behind
    half of the flood, as a request arriving during an attack would be)."""
    half = len(forged) // 2
    tokens = [*forged[:half], genuine, *forged[half:]]
    answers = await asyncio.gather(*(client.get("/users/me", headers=bearer(t)) for t in tokens))
    return [*answers[:half], *answers[half + 1 :]], answers[half]


async def test_unknown_kid_flood_is_refused_with_one_key_reload(
    fresh_postgres_url: str, redis_url: str | None, tmp_path: Path
) -> None:
    backend = Backend("postgresql", fresh_postgres_url, redis_url, tmp_path, generate_data_key())
    # RS256: the slowest key to load. Two pooled connections: one reload and one genuine
    # request fit; a reload per forged kid does not.
    settings = settings_for(backend, jwt_algorithm="RS256", database_pool_size=2)
    clock = FakeClock()
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    async with app_counting_key_reads(settings, clock) as (client, reads):
        _, tokens = await registered_login(client)
        genuine = tokens["access_token"]
        forged = [forged_token(attacker, clock) for _ in range(FLOOD)]

        # The keys may be reloaded again when the flood arrives: one reload, for everyone.
        clock.advance(RELOAD_EVERY + 1)
        reads.clear()
        answers, answer = await flood_beside(client, forged, genuine)
        assert answer.status_code == 200, answer.text
        refused = [r for r in answers if r.status_code == 401]
        others = sorted({f"{r.status_code} {r.text}" for r in answers if r.status_code != 401})
        assert len(refused) == FLOOD, others
        assert {r.json()["code"] for r in refused} == {"invalid_token"}
        assert len(reads) <= 1, f"{len(reads)} key reloads for one flood"

        # Within 5 s of that reload, another flood reads no key at all.
        clock.advance(RELOAD_EVERY - 1)
        reads.clear()
        answers, answer = await flood_beside(client, forged, genuine)
        assert answer.status_code == 200, answer.text
        assert [r.status_code for r in answers] == [401] * FLOOD
        assert reads == []
