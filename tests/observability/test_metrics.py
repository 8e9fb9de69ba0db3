"""GET /metrics: the Prometheus text format, the bearer token, labels that name no person,
and, with two real uvicorn workers, counts that add up across them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mfa_service.config import Settings
from mfa_service.secretbox import generate_data_key
from tests.serve import serving
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    challenge,
    clean_redis,
    free_port,
    mfa_user,
    register,
    running_app,
    settings_for,
)
from tests.test_live_servers import child_workers, pin_one_client_per_worker

TOKEN = "metrics-token-" + "x" * 24


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, token: str | None = TOKEN) -> str:
    r = await client.get("/metrics", headers=bearer(token) if token else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=")
    return r.text


async def test_metrics_need_the_token_when_one_is_set(backend: Backend, clock: FakeClock) -> None:
    async with running_app(settings_for(backend, metrics_token=TOKEN), clock) as client:
        for headers in (
            {},
            bearer("wrong"),
            {"Authorization": f"Basic {TOKEN}"},
            bearer(TOKEN[:-1]),
        ):
            r = await client.get("/metrics", headers=headers)
            assert r.status_code == 401
            assert r.headers["content-type"] == "application/problem+json"
            assert r.headers["www-authenticate"] == 'Bearer error="invalid_token"'
        await scrape(client)
        document = (await client.get("/openapi.json")).json()
        assert "/metrics" not in document["paths"]


async def test_domain_counters_by_outcome_and_no_label_names_a_person(
    backend: Backend, clock: FakeClock
) -> None:
    async with running_app(settings_for(backend, metrics_token=TOKEN), clock) as client:
        before = await scrape(client)
        user = await mfa_user(client, clock)
        token = await challenge(client, user.email)
        for _ in range(2):
            r = await client.post(
                "/mfa/challenge", json={"challenge_token": token, "code": "000000"}
            )
            assert r.status_code == 401
        r = await client.post(
            "/mfa/challenge",
            json={"challenge_token": token, "backup_code": user.backup_codes[0]},
        )
        assert r.status_code == 200
        refresh = r.json()["refresh_token"]
        assert (await client.post("/auth/refresh", json={"refresh_token": refresh})).is_success
        again = await client.post("/auth/refresh", json={"refresh_token": refresh})
        assert again.status_code == 401  # a reuse
        await client.post("/auth/login", json={"email": user.email, "password": "nope nope"})
        after = await scrape(client)

        def grew_in(text: str, name: str, **labels: str) -> float:
            return value(text, name, **labels) - value(before, name, **labels)

        def grew(name: str, **labels: str) -> float:
            return grew_in(after, name, **labels)

        assert grew("mfa_logins_total", method="password", outcome="mfa_required") == 1
        assert grew("mfa_logins_total", method="password", outcome="failed") == 1
        assert grew("mfa_challenges_total", method="totp", outcome="failed") == 2
        assert grew("mfa_challenges_total", method="backup_code", outcome="succeeded") == 1
        assert grew("mfa_refreshes_total", outcome="succeeded") == 1
        assert grew("mfa_refreshes_total", outcome="failed") == 1
        assert grew("mfa_refresh_reuse_total") == 1
        assert grew("mfa_registrations_total", outcome="succeeded") >= 1
        assert grew(
            "mfa_http_requests_total", method="POST", route="/mfa/challenge", status="401"
        ) == 2  # fmt: skip
        assert grew(
            "mfa_http_request_duration_seconds_count", method="POST", route="/auth/refresh"
        ) == 2  # fmt: skip
        # A route with an id in its path is labelled by its template.
        sessions = await client.get("/users/me/sessions", headers=bearer(user.access_token))
        session_id = sessions.json()["items"][0]["id"] if sessions.is_success else str(uuid.uuid4())
        await client.delete(f"/users/me/sessions/{uuid.uuid4()}", headers=bearer(user.access_token))
        # The account page's files share one label; a path no route takes is "unmatched".
        for path in ("/account/", "/account/account.js", "/account/missing.js", "/nowhere"):
            await client.get(path)
        text = await scrape(client)
        assert 'route="/users/me/sessions/{session_id}"' in text
        page = {"method": "GET", "route": "/account/{file}"}
        assert grew_in(text, "mfa_http_requests_total", **page, status="200") == 2
        assert grew_in(text, "mfa_http_requests_total", **page, status="404") == 1
        assert (
            grew_in(text, "mfa_http_requests_total", method="GET", route="unmatched", status="404")
            == 1
        )
        for personal in (user.email, "203.0.113.7", session_id, user.email.split("@")[0]):
            assert personal not in text


async def test_two_workers_add_up(redis_url: str | None, postgres_url: str, tmp_path: Path) -> None:
    """Each worker counts what it answered; a scrape of either shows the sum of both."""
    if redis_url is None:
        pytest.skip("two workers need a real Redis server")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MFA_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    prefix = f"mfa-metrics-{uuid.uuid4().hex[:8]}:"
    # A directory left by a run that was killed (its pid is gone): the next start removes it.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = Path(tempfile.mkdtemp(prefix=f"mfa-metrics-{dead.pid}-"))
    (orphan / "counter_1.db").write_bytes(b"")
    env.update(
        MFA_DATABASE_URL=postgres_url,
        MFA_REDIS_URL=redis_url,
        MFA_REDIS_PREFIX=prefix,
        MFA_DATA_DIR=str(tmp_path),
        MFA_DATA_KEY=generate_data_key(),
        MFA_ISSUER=base_url,
        MFA_METRICS_TOKEN=TOKEN,
    )
    async with serving(env, port, tmp_path / "server.log", workers=2) as pid:
        assert not orphan.exists()
        (own,) = Path(tempfile.gettempdir()).glob(f"mfa-metrics-{pid}-*")
        assert list(own.glob("counter_*.db"))  # the workers count into it
        workers: list[int] = []
        for _ in range(100):
            workers = child_workers(pid)
            if len(workers) == 2:
                break
            await asyncio.sleep(0.1)
        assert len(workers) == 2
        pinned = await pin_one_client_per_worker(base_url, workers, port)
        try:
            first, second = (pinned[w] for w in workers)
            start = await scrape(first)
            for client, n in ((first, 7), (second, 5)):
                for _ in range(n):
                    assert (await client.get("/healthz")).status_code == 200
                await register(client)
            # A password failure on each worker: the domain counters add up too.
            for client in (first, second):
                r = await client.post(
                    "/auth/login", json={"email": "x@example.com", "password": PASSWORD}
                )
                assert r.status_code == 401
            texts = [await scrape(first), await scrape(second)]
            for text in texts:
                grown = value(
                    text, "mfa_http_requests_total", method="GET", route="/healthz", status="200"
                ) - value(
                    start, "mfa_http_requests_total", method="GET", route="/healthz", status="200"
                )
                assert grown == 12
                assert value(text, "mfa_registrations_total", outcome="succeeded") == 2
                assert value(text, "mfa_logins_total", method="password", outcome="failed") == 2
        finally:
            for client in pinned.values():
                await client.aclose()
            await clean_redis(Settings(redis_url=redis_url, redis_prefix=prefix))
    assert not own.exists()  # serve removes its directory when it stops
