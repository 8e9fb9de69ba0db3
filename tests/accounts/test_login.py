from __future__ import annotations

import asyncio
import time

import httpx

from tests.support import PASSWORD, bearer, new_email, register


async def test_login_without_mfa_returns_a_token_pair(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    r = await client.post("/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "authenticated"
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["access_token"].count(".") == 2
    assert len(body["refresh_token"]) >= 43


async def test_unknown_email_and_wrong_password_answer_identically(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    await register(client, email)
    wrong = await client.post("/auth/login", json={"email": email, "password": "not the password"})
    unknown = await client.post(
        "/auth/login", json={"email": new_email(), "password": "not the password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.content == unknown.content
    assert (
        wrong.headers["content-type"]
        == unknown.headers["content-type"]
        == ("application/problem+json")
    )
    assert wrong.json()["code"] == "invalid_credentials"


async def test_unknown_email_costs_a_password_hash(client: httpx.AsyncClient) -> None:
    """An unknown email is verified against a dummy hash: the answer is not instant."""
    email = new_email()
    await register(client, email)
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    for _ in range(3):
        for kind, address in (("known", email), ("unknown", new_email())):
            start = time.perf_counter()
            await client.post("/auth/login", json={"email": address, "password": "wrong pass"})
            timings[kind].append(time.perf_counter() - start)
    known, unknown = min(timings["known"]), min(timings["unknown"])
    # argon2id at 19 MiB takes tens of ms: both paths must pay it.
    assert unknown > known * 0.5


async def test_health_answers_while_logins_hash(client: httpx.AsyncClient) -> None:
    """Hashing runs in worker threads: the event loop keeps serving during a login burst."""
    emails = [new_email() for _ in range(4)]
    for email in emails:
        await register(client, email)
    burst = [
        asyncio.create_task(client.post("/auth/login", json={"email": email, "password": PASSWORD}))
        for email in emails * 3
    ]
    await asyncio.sleep(0.01)
    health = await client.get("/healthz")
    logins_still_running = sum(not t.done() for t in burst)
    answers = await asyncio.gather(*burst)
    assert health.status_code == 200
    assert all(a.status_code == 200 for a in answers)
    # Had hashing blocked the loop, the health check would have queued behind the burst.
    assert logins_still_running > 0


async def test_email_lookup_is_case_insensitive(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    r = await client.post("/auth/login", json={"email": f" {email.upper()}", "password": PASSWORD})
    assert r.status_code == 200
    me = await client.get("/users/me", headers=bearer(r.json()["access_token"]))
    assert me.json()["email"] == email
