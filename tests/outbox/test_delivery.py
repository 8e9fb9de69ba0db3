"""The outbox worker against a real SMTP server that is down, comes back, or never does;
and a restart of the service in the middle of a backlog."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from mfa_service.outbox.service import OUTBOX
from tests.recovery.smtp import SmtpServer
from tests.support import (
    PASSWORD,
    Backend,
    FakeClock,
    bearer,
    registered_login,
    running_app,
    settings_for,
)

NEW_PASSWORD = "a brand new passphrase"


async def user_rows(backend: Backend, user_id: str) -> list[Any]:
    """The user's mail rows in the outbox."""
    engine = create_async_engine(backend.database_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(OUTBOX))).all()
    finally:
        await engine.dispose()
    return [r for r in rows if r.payload.get("user_id") == user_id]


async def wait_rows(
    backend: Backend, user_id: str, done: Callable[[list[Any]], bool], timeout: float = 60
) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = await user_rows(backend, user_id)
        if done(rows):
            return rows
        await asyncio.sleep(0.1)
    raise AssertionError(f"outbox rows not as expected: {rows}")


def failed(count: int) -> Callable[[list[Any]], bool]:
    return lambda rows: (
        len(rows) == count
        and all(r.last_error and r.delivered_at is None and r.attempts >= 1 for r in rows)
    )


async def account(client: httpx.AsyncClient) -> tuple[str, str, dict[str, Any]]:
    email, tokens = await registered_login(client)
    me = await client.get("/users/me", headers=bearer(tokens["access_token"]))
    return email, me.json()["id"], tokens


async def change_password(client: httpx.AsyncClient, tokens: dict[str, Any], new: str) -> None:
    r = await client.post(
        "/auth/password",
        headers=bearer(tokens["access_token"]),
        json={"current_password": PASSWORD, "new_password": new},
    )
    assert r.status_code == 204, r.text


async def test_smtp_down_delays_mail_without_failing_requests(
    backend: Backend, clock: FakeClock
) -> None:
    server = SmtpServer()  # nothing listens on its port yet
    settings = settings_for(backend, smtp_url=server.url, outbox_poll_seconds=0.2)
    async with running_app(settings, clock) as client:
        email, user_id, tokens = await account(client)
        await change_password(client, tokens, NEW_PASSWORD)
        forgot = await client.post("/auth/password/forgot", json={"email": email})
        assert forgot.status_code == 202
        rows = await wait_rows(backend, user_id, failed(2))  # the notice and the reset link
        for row in rows:
            assert row.last_error.startswith("DeliveryError: SMTP server unreachable")
            assert email not in row.last_error

        server.start()
        try:
            clock.advance(60)  # past the retry (within the link's 30 minutes)
            mails = await server.wait_for(email, 2)
            assert sorted(m.subject for m in mails)[0].startswith("Reset your")
            reset = next(m for m in mails if m.subject.startswith("Reset your"))
            r = await client.post(
                "/auth/password/reset", json={"token": reset.token, "new_password": PASSWORD}
            )
            assert r.status_code == 204, r.text
            await wait_rows(
                backend, user_id, lambda rs: all(r.delivered_at is not None for r in rs)
            )
        finally:
            server.stop()


async def test_restart_mid_backlog_loses_nothing(backend: Backend, clock: FakeClock) -> None:
    server = SmtpServer()
    settings = settings_for(backend, smtp_url=server.url, outbox_poll_seconds=0.2)
    async with running_app(settings, clock) as client:
        email, user_id, tokens = await account(client)
        await change_password(client, tokens, NEW_PASSWORD)
        await wait_rows(backend, user_id, failed(1))  # tried and failed
        # Enqueued just before the service stops: perhaps tried, perhaps claimed, perhaps not.
        r = await client.post("/auth/email/verification", headers=bearer(tokens["access_token"]))
        assert r.status_code == 202

    server.start()
    try:
        async with running_app(settings, clock):
            clock.advance(3600)  # past every retry and lease
            mails = await server.wait_for(email, 2)
            subjects = sorted(m.subject for m in mails)
            assert subjects[0].startswith("Confirm your email")
            assert subjects[1].endswith("password changed")
            await wait_rows(
                backend,
                user_id,
                lambda rs: len(rs) == 2 and all(r.delivered_at is not None for r in rs),
            )
    finally:
        server.stop()


async def test_mail_that_cannot_be_sent_for_a_day_is_given_up(
    backend: Backend, clock: FakeClock
) -> None:
    server = SmtpServer()  # never started
    settings = settings_for(
        backend, smtp_url=server.url, outbox_poll_seconds=0.2, outbox_max_age=3600
    )
    async with running_app(settings, clock) as client:
        _, user_id, tokens = await account(client)
        await change_password(client, tokens, NEW_PASSWORD)
        await wait_rows(backend, user_id, failed(1))
        for _ in range(8):  # each retry falls due; the one past the age limit is the last
            clock.advance(900)
            await asyncio.sleep(0.5)
        (row,) = await wait_rows(backend, user_id, lambda rs: rs[0].dead_at is not None)
        assert row.delivered_at is None
        assert 2 <= row.attempts <= 9
