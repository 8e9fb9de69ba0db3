from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.support import PASSWORD, bearer, login, new_email, register


async def test_register_normalises_email_and_hides_the_hash(client: httpx.AsyncClient) -> None:
    email = new_email()
    r = await client.post(
        "/auth/register", json={"email": f"  {email.upper()} ", "password": PASSWORD}
    )
    assert r.status_code == 201
    body = r.json()
    assert body == {"id": body["id"], "email": email, "mfa_enabled": False}
    tokens = await login(client, email.title())
    me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert set(me.json()) == {"id", "email", "mfa_enabled", "created_at", "email_verified"}
    assert me.json()["email"] == email
    assert me.json()["email_verified"] is False


async def test_duplicate_email_is_409(client: httpx.AsyncClient) -> None:
    email = new_email()
    await register(client, email)
    r = await client.post("/auth/register", json={"email": email.upper(), "password": PASSWORD})
    assert r.status_code == 409
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "email_taken"


async def test_concurrent_registrations_of_one_email_create_one_account(
    client: httpx.AsyncClient,
) -> None:
    email = new_email()
    answers = await asyncio.gather(
        *[
            client.post("/auth/register", json={"email": email, "password": PASSWORD})
            for _ in range(5)
        ]
    )
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409]


@pytest.mark.parametrize(
    ("password", "code"),
    [
        ("s3cr3t", "validation_error"),
        ("x" * 129, "validation_error"),
        ("password123", "weak_password"),
        ("qwertyuiop", "weak_password"),
        ("aaaaaaaaaa", "weak_password"),
    ],
)
async def test_weak_or_invalid_passwords_are_refused(
    client: httpx.AsyncClient, password: str, code: str
) -> None:
    r = await client.post("/auth/register", json={"email": new_email(), "password": password})
    assert r.status_code == 422
    assert r.json()["code"] == code
    assert password not in r.text  # the refused password is not echoed


async def test_password_equal_to_email_is_refused(client: httpx.AsyncClient) -> None:
    email = new_email()
    r = await client.post("/auth/register", json={"email": email, "password": email})
    assert r.status_code == 422
    assert r.json()["code"] == "weak_password"


async def test_invalid_email_is_422(client: httpx.AsyncClient) -> None:
    r = await client.post("/auth/register", json={"email": "not-an-email", "password": PASSWORD})
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["body", "email"]
